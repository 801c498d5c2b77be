"""Crawl inputs: identity lists, URL lists, config validation, the engine registry, URL safety checks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from PIL import Image

from celebref.config import load_section
from celebref.images import MAX_PIXELS
from crawl.config import CrawlConfig
from crawl.download import ImageInfo, inspect_image
from crawl.engines import ENGINES, build_engine, register_engine, resolve_identities
from crawl.identities import Identity, parse_identity_list, slugify
from crawl.safety import UrlPolicy, check_url
from crawl.urllist import parse_url_list, url_list_identities


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# identity lists -------------------------------------------------------------------------------------


def test_text_identity_list(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ids.txt", "# celebrities\n\nBarack Obama\n  Penélope Cruz  \n# end\nJoe  Biden\n"
    )
    assert parse_identity_list(path) == [
        Identity("barack_obama", "Barack Obama", "Barack Obama"),
        Identity("penelope_cruz", "Penélope Cruz", "Penélope Cruz"),
        Identity("joe_biden", "Joe Biden", "Joe Biden"),
    ]


def test_csv_identity_list_with_header_and_query(tmp_path: Path) -> None:
    text = 'name,query\n# a comment row\n"Martin Luther King, Jr.",portrait\nAda Lovelace\n\nGrace Hopper,\n'
    ids = parse_identity_list(_write(tmp_path / "ids.csv", text))
    assert [i.slug for i in ids] == ["martin_luther_king_jr", "ada_lovelace", "grace_hopper"]
    assert ids[0].name == "Martin Luther King, Jr." and ids[0].query == "Martin Luther King, Jr. portrait"
    assert ids[1].query == "Ada Lovelace" and ids[2].query == "Grace Hopper"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,query\nAda Lovelace,portrait,extra\n", "ids.csv:2: expected columns name[,query], got 3"),
        ("Ada Lovelace\n,portrait\n", "ids.csv:2: empty name"),
        ("Ada Lovelace\nada lovelace\n", "ids.csv:2: identity 'ada lovelace' has the same folder name"),
        ("# nothing\n\n", "identity list is empty"),
    ],
)
def test_bad_csv_rows_raise_with_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_identity_list(_write(tmp_path / "ids.csv", text))


def test_text_list_duplicate_slug_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ids.txt:3: .* same folder name 'joe_biden' as line 1"):
        parse_identity_list(_write(tmp_path / "ids.txt", "Joe Biden\nAda\nJoe-Biden\n"))
    with pytest.raises(FileNotFoundError, match="identity list not found"):
        parse_identity_list(tmp_path / "nope.txt")


def test_slugify_rules() -> None:
    assert slugify("Barack Obama") == "barack_obama"
    assert slugify("  Beyoncé  Knowles-Carter ") == "beyonce_knowles_carter"
    assert slugify("_Hidden_") == "hidden"  # never starts with "_" (reserved for non-identity folders)
    cjk = slugify("王菲")
    assert cjk.startswith("id_") and len(cjk) == 15 and cjk == slugify("王菲") and cjk != slugify("周迅")


# URL lists ------------------------------------------------------------------------------------------


def test_url_list_parsing(tmp_path: Path) -> None:
    text = (
        "identity,url\nAda Lovelace,https://a.example/1.jpg\n# skip\nGrace Hopper,https://b.example/2.jpg\n"
    )
    text += "ada_lovelace,https://a.example/3.jpg\n"
    rows = parse_url_list(_write(tmp_path / "urls.csv", text))
    assert [(i.slug, u) for i, u in rows] == [
        ("ada_lovelace", "https://a.example/1.jpg"),
        ("grace_hopper", "https://b.example/2.jpg"),
        ("ada_lovelace", "https://a.example/3.jpg"),
    ]
    ids = url_list_identities(rows)
    assert [(i.slug, i.name) for i in ids] == [
        ("ada_lovelace", "Ada Lovelace"),
        ("grace_hopper", "Grace Hopper"),
    ]


def test_url_list_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"urls.csv:2: expected columns identity,url, got 1"):
        parse_url_list(_write(tmp_path / "urls.csv", "Ada,https://a.example/1.jpg\nGrace\n"))
    with pytest.raises(ValueError, match=r"urls.csv:1: empty identity or url"):
        parse_url_list(_write(tmp_path / "urls.csv", "Ada,\n"))


# config and registry --------------------------------------------------------------------------------


def test_config_from_params_file_and_validation(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    section = {
        "engine": "bing",
        "identities_file": "ids.csv",
        "max_images": 30,
        "search_filters": {"people": "face"},
    }
    params.write_text(yaml.safe_dump({"crawl": section}), encoding="utf-8")
    config = load_section(CrawlConfig, "crawl", params)
    assert config.engine == "bing" and config.max_images == 30 and config.identities_file == Path("ids.csv")
    with pytest.raises(
        ValueError, match="unknown engine 'yahoo'; allowed: baidu, bing, flickr, google, local, urls"
    ):
        CrawlConfig(engine="yahoo", identities_file="x")
    with pytest.raises(ValueError, match="extra"):
        CrawlConfig(engine="local", local_root="x", max_imgs=3)
    with pytest.raises(ValueError, match="engine 'local' needs local_root"):
        CrawlConfig(engine="local")
    with pytest.raises(ValueError, match="engine 'bing' needs identities_file"):
        CrawlConfig(engine="bing")
    with pytest.raises(ValueError, match="starting with '_'"):
        CrawlConfig(engine="local", local_root="x", distractor_dir="distractors")
    with pytest.raises(ValueError, match="max_candidates"):
        CrawlConfig(engine="local", local_root="x", max_images=10, max_candidates=5)
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        CrawlConfig(engine="local", local_root="x", allowed_networks=("not-a-net",))
    with pytest.raises(ValueError):
        CrawlConfig(engine="local", local_root="x", workers=0)
    with pytest.raises(Exception, match="frozen"):
        config.max_images = 3  # type: ignore[misc]


def test_registry_rejects_unknown_and_duplicate_names(tmp_path: Path) -> None:
    config = CrawlConfig(engine="local", local_root=tmp_path)
    with pytest.raises(
        ValueError, match="unknown engine 'yahoo'; allowed: baidu, bing, flickr, google, local, urls"
    ):
        build_engine("yahoo", config, [], lambda url: b"")
    with pytest.raises(ValueError, match="already registered"):
        register_engine("bing", ENGINES["bing"])


def test_flickr_without_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MY_FLICKR_KEY", raising=False)
    config = CrawlConfig(
        engine="flickr", identities_file=tmp_path / "ids.txt", flickr_apikey_env="MY_FLICKR_KEY"
    )
    with pytest.raises(ValueError, match="environment variable MY_FLICKR_KEY"):
        build_engine("flickr", config, [], lambda url: b"")


def test_resolve_identities_prefers_the_identity_list(tmp_path: Path) -> None:
    (tmp_path / "root" / "ada_lovelace").mkdir(parents=True)
    (tmp_path / "root" / "grace_hopper").mkdir()
    (tmp_path / "root" / "_extras").mkdir()
    local = CrawlConfig(engine="local", local_root=tmp_path / "root")
    assert [i.slug for i in resolve_identities(local)] == ["ada_lovelace", "grace_hopper"]
    ids = _write(tmp_path / "ids.txt", "Grace Hopper\n")
    listed = CrawlConfig(engine="local", local_root=tmp_path / "root", identities_file=ids)
    assert resolve_identities(listed) == [Identity("grace_hopper", "Grace Hopper", "Grace Hopper")]


# URL safety -----------------------------------------------------------------------------------------


def _policy(addresses: dict[str, list[str]], **kwargs: object) -> UrlPolicy:
    def resolver(host: str, port: int) -> list[str]:
        if host not in addresses:
            raise OSError(f"unknown host {host}")
        return addresses[host]

    return UrlPolicy.from_strings(
        allow_private_hosts=bool(kwargs.get("allow_private_hosts", False)),
        allowed_networks=tuple(kwargs.get("allowed_networks", ())),  # type: ignore[arg-type]
        resolver=resolver,
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://files.example/a.jpg", "scheme 'ftp' not allowed"),
        ("file:///etc/passwd", "scheme 'file' not allowed"),
        ("http:///nohost.jpg", "no host"),
        ("http://127.0.0.1/a.jpg", "loopback"),
        ("http://[::1]/a.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://192.168.0.10:8080/a.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/a.jpg", "unspecified"),
        ("http://224.0.0.1/a.jpg", "multicast"),
        ("http://100.64.0.1/a.jpg", "not globally routable"),
        ("http://mixed.example/a.jpg", "resolves to private address 10.9.8.7"),
        ("http://internal.example/a.jpg", "resolves to link-local address fe80::1"),
        ("http://garbled.example/a.jpg", "resolves to 'not-an-ip', which is no IP address"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    policy = _policy(
        {
            "mixed.example": ["93.184.216.34", "10.9.8.7"],
            "internal.example": ["fe80::1"],
            "garbled.example": ["93.184.216.34", "not-an-ip"],
        }
    )
    problem = check_url(url, policy)
    assert problem is not None and reason in problem


def test_check_url_accepts_public_and_allowed() -> None:
    policy = _policy({"public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    assert check_url("https://public.example/a.jpg", policy) is None
    assert check_url("http://93.184.216.34/a.jpg", policy) is None
    assert check_url("http://unresolvable.example/a.jpg", policy) is None  # no address: a download error
    assert check_url("http://10.1.2.3/a.jpg", _policy({}, allow_private_hosts=True)) is None
    only_one = _policy({}, allowed_networks=("10.1.0.0/16",))
    assert check_url("http://10.1.2.3/a.jpg", only_one) is None
    assert check_url("http://10.2.0.1/a.jpg", only_one) is not None


def test_shipped_example_identity_list_parses() -> None:
    ids = parse_identity_list(Path(__file__).resolve().parents[1] / "crawl" / "identities.example.csv")
    assert len(ids) >= 20 and len({i.slug for i in ids}) == len(ids)
    by_slug = {i.slug: i for i in ids}
    assert by_slug["beyonce"].name == "Beyoncé"
    assert by_slug["michael_jordan"].query == "Michael Jordan basketball"


# image checks ---------------------------------------------------------------------------------------


def _encoded(fmt: str, size: tuple[int, int] = (30, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif")])
def test_inspect_image_format_and_size(fmt: str, ext: str) -> None:
    info, status, error = inspect_image(_encoded(fmt), min_side=0, max_pixels=MAX_PIXELS)
    assert status == "ok" and error is None and info == ImageInfo(width=30, height=20, ext=ext)


def test_inspect_image_limits() -> None:
    data = _encoded("PNG", (30, 20))
    info, status, error = inspect_image(data, min_side=21, max_pixels=MAX_PIXELS)
    assert status == "too_small" and info is not None and "30x20" in (error or "")
    info, status, error = inspect_image(data, min_side=0, max_pixels=599)
    assert status == "failed_to_decode" and info is None and "exceeds 599 pixels" in (error or "")
    assert inspect_image(b"GIF89a", min_side=0, max_pixels=MAX_PIXELS)[1] == "failed_to_decode"
