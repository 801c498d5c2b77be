"""Weights resolution: order, error message, checksums, package resources, registry."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from faces import weights as W
from faces.weights import (
    KNOWN_WEIGHTS,
    WeightsChecksumError,
    WeightsNotFoundError,
    WeightsSpec,
    get_spec,
    package_file,
    resolve_weights,
    sha256_of,
)

PAYLOAD = b"tiny weights \x00\x01\x02" * 10


@pytest.fixture()
def served(tmp_path: Path) -> Path:
    """A 'remote' file reachable through a file:// URL."""
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "tiny.bin").write_bytes(PAYLOAD)
    return remote / "tiny.bin"


def tiny_spec(url: str, sha256: str | None = None, **kw) -> WeightsSpec:
    return WeightsSpec(name="tiny", filename="tiny.bin", url=url, sha256=sha256, **kw)


def test_error_names_file_url_and_directory(tmp_path: Path) -> None:
    spec = tiny_spec("https://example.org/models/tiny.bin")
    cache = tmp_path / "cache"
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(spec, cache_dir=cache)
    msg = str(info.value)
    assert "tiny.bin" in msg
    assert "https://example.org/models/tiny.bin" in msg
    assert str(cache) in msg
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("downloadable", [True, False])
def test_error_offers_allow_download_only_where_it_can_fetch_the_file(tmp_path: Path, downloadable) -> None:
    spec = tiny_spec("https://example.org/view?id=tiny", downloadable=downloadable)
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(spec, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert ("enable allow_download" in msg) == downloadable
    assert ("allow_download cannot fetch" in msg) == (not downloadable)


def test_resolution_order(tmp_path: Path, served: Path) -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    cache = tmp_path / "cache"
    spec = tiny_spec(served.as_uri(), digest)

    # Nothing local, download off -> error; download on -> fetched into the cache dir.
    with pytest.raises(WeightsNotFoundError):
        resolve_weights(spec, cache_dir=cache)
    got = resolve_weights(spec, cache_dir=cache, allow_download=True)
    assert got == cache / "tiny.bin"
    assert got.read_bytes() == PAYLOAD
    assert not [p for p in cache.iterdir() if p.name != "tiny.bin"], "temporary files left behind"

    # The cached copy is used next time, without touching the URL.
    served.unlink()
    assert resolve_weights(spec, cache_dir=cache) == cache / "tiny.bin"

    # An explicit path wins over the cache.
    explicit = tmp_path / "mine.bin"
    explicit.write_bytes(b"other")
    assert resolve_weights(spec, explicit_path=explicit, cache_dir=cache) == explicit

    # A missing explicit path is an error, not a silent fallback to the cache.
    with pytest.raises(WeightsNotFoundError, match="mine2.bin"):
        resolve_weights(spec, explicit_path=tmp_path / "mine2.bin", cache_dir=cache)


def test_cache_beats_package_and_package_beats_download(tmp_path: Path, monkeypatch) -> None:
    # A package whose import fails (like face_recognition_models without pkg_resources).
    pkg = tmp_path / "site" / "fakeweightspkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('pkg_resources is missing')\n")
    (pkg / "models" / "tiny.bin").write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    spec = tiny_spec(
        "https://example.invalid/tiny.bin", package_resource=("fakeweightspkg", "models/tiny.bin")
    )
    cache = tmp_path / "cache"
    assert resolve_weights(spec, cache_dir=cache) == pkg / "models" / "tiny.bin"
    assert "fakeweightspkg" not in sys.modules

    cache.mkdir()
    (cache / "tiny.bin").write_bytes(b"cached")
    assert resolve_weights(spec, cache_dir=cache) == cache / "tiny.bin"


def test_default_cache_dir_from_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "envcache"))
    assert W.default_cache_dir() == tmp_path / "envcache"
    spec = tiny_spec("https://example.org/tiny.bin")
    with pytest.raises(WeightsNotFoundError, match="envcache"):
        resolve_weights(spec)
    (tmp_path / "envcache").mkdir()
    (tmp_path / "envcache" / "tiny.bin").write_bytes(PAYLOAD)
    assert resolve_weights(spec) == tmp_path / "envcache" / "tiny.bin"
    monkeypatch.delenv(W.ENV_VAR)
    assert W.default_cache_dir() == Path.home() / ".cache" / "celebref"


def test_sha256_mismatch_rejected(tmp_path: Path, served: Path) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    spec = tiny_spec(served.as_uri(), wrong)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsChecksumError, match="sha256 mismatch"):
        resolve_weights(spec, cache_dir=cache, allow_download=True)
    assert not (cache / "tiny.bin").exists()
    assert not list(cache.iterdir()), "a rejected download must leave nothing behind"


def test_verify_local_file(tmp_path: Path) -> None:
    local = tmp_path / "tiny.bin"
    local.write_bytes(PAYLOAD)
    good = tiny_spec("https://example.org/tiny.bin", hashlib.sha256(PAYLOAD).hexdigest())
    bad = tiny_spec("https://example.org/tiny.bin", hashlib.sha256(b"x").hexdigest())
    assert resolve_weights(good, explicit_path=local, verify=True) == local
    assert resolve_weights(bad, explicit_path=local) == local  # not hashed unless asked
    with pytest.raises(WeightsChecksumError):
        resolve_weights(bad, explicit_path=local, verify=True)


def test_hash_prefix_from_torch_hub_style_name(tmp_path: Path) -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    remote = tmp_path / "remote"
    remote.mkdir()
    for prefix, ok in ((digest[:8], True), ("deadbeef" if digest[:8] != "deadbeef" else "feedface", False)):
        name = f"net-{prefix}.pth"
        (remote / name).write_bytes(PAYLOAD)
        spec = WeightsSpec(
            name="net", filename=name, url=(remote / name).as_uri(), name_has_sha256_prefix=True
        )
        if ok:
            assert (
                resolve_weights(spec, cache_dir=tmp_path / "c", allow_download=True).read_bytes() == PAYLOAD
            )
        else:
            with pytest.raises(WeightsChecksumError, match="prefix"):
                resolve_weights(spec, cache_dir=tmp_path / "c", allow_download=True)


def test_name_hash_prefix_is_opt_in(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "net-0badc0de.pth").write_bytes(PAYLOAD)
    spec = WeightsSpec(name="net", filename="net-0badc0de.pth", url=(remote / "net-0badc0de.pth").as_uri())
    assert resolve_weights(spec, cache_dir=tmp_path / "c", allow_download=True).read_bytes() == PAYLOAD


def test_archive_member_download(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("det.onnx", b"detector")
        zf.writestr("rec.onnx", PAYLOAD)
    spec = WeightsSpec(
        name="rec",
        filename="rec.onnx",
        url=archive.as_uri(),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        archive_member="rec.onnx",
    )
    with pytest.raises(WeightsNotFoundError, match="extract 'rec.onnx'"):
        resolve_weights(spec, cache_dir=tmp_path / "c")
    got = resolve_weights(spec, cache_dir=tmp_path / "c", allow_download=True)
    assert got.read_bytes() == PAYLOAD
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["rec.onnx"]


def test_failed_download_is_a_not_found_error(tmp_path: Path) -> None:
    spec = tiny_spec((tmp_path / "nowhere" / "tiny.bin").as_uri())
    with pytest.raises(WeightsNotFoundError, match="download of 'tiny.bin'"):
        resolve_weights(spec, cache_dir=tmp_path / "c", allow_download=True)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="bare file name"):
        WeightsSpec(name="a", filename="dir/a.bin", url="https://x")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        WeightsSpec(name="a", filename="a.bin", url="https://x", sha256="abc")
    with pytest.raises(ValueError, match="known: "):
        get_spec("no_such_weights")
    with pytest.raises(ValueError, match="already registered"):
        W.register_weights(KNOWN_WEIGHTS["dlib_landmarks_68"])


def test_registry_covers_the_toolkit_models() -> None:
    filenames = {spec.filename for spec in KNOWN_WEIGHTS.values()}
    for needed in (
        "shape_predictor_68_face_landmarks.dat",
        "dlib_face_recognition_resnet_model_v1.dat",
        "mmod_human_face_detector.dat",
        "alexnet-owt-7be5be79.pth",
        "pt_inception-2015-12-05-6726825d.pth",
        "vgg19-dcbb9e9d.pth",
        "DMDNet.pth",
        "w600k_r50.onnx",
    ):
        assert needed in filenames
    for spec in KNOWN_WEIGHTS.values():
        assert spec.url.startswith("https://")
    # torchvision checks its weights against the sha256 prefix in the file name; so do we.
    assert get_spec("torchvision_vgg19").name_has_sha256_prefix
    assert get_spec("torchvision_alexnet").name_has_sha256_prefix


def test_shipped_dlib_models_resolve_and_match_their_hashes(tmp_path: Path) -> None:
    for name in ("dlib_landmarks_68", "dlib_resnet_embedder", "dlib_mmod_detector", "lpips_alex_linear"):
        spec = get_spec(name)
        path = resolve_weights(spec, cache_dir=tmp_path / "empty", verify=True)
        assert path.is_file() and path.name == Path(spec.package_resource[1]).name
        assert sha256_of(path) == spec.sha256
    assert package_file("face_recognition_models", "models/no_such_file.dat") is None
    assert package_file("no_such_package_zz", "x") is None
