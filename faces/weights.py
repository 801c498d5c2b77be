"""Model-weights resolution, in one place, for every pretrained file the toolkit uses.

Order of resolution (:func:`resolve_weights`):

1. an explicit path (from ``params.yaml``); if given it must exist, nothing else is tried;
2. the cache directory: ``cache_dir`` argument, else ``$CELEBREF_WEIGHTS``, else ``~/.cache/celebref``;
3. a file shipped inside an installed Python package (e.g. ``face_recognition_models`` ships the dlib
   ``.dat`` files, ``lpips`` ships its linear-layer weights), located without importing the package;
4. a download into the cache directory, only when ``allow_download`` is true, checked against the
   spec's sha256 (or, for torchvision files, the sha256 prefix in their torch-hub style file name)
   and moved into place atomically;
5. otherwise :class:`WeightsNotFoundError`, whose message names the file, its URL and the directory to
   put it in.

There is no fallback to random weights anywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from celebref.atomic import atomic_path

__all__ = [
    "WeightsSpec",
    "WeightsNotFoundError",
    "WeightsChecksumError",
    "KNOWN_WEIGHTS",
    "ENV_VAR",
    "default_cache_dir",
    "get_spec",
    "register_weights",
    "resolve_weights",
    "package_file",
    "sha256_of",
    "verify_file",
]

ENV_VAR = "CELEBREF_WEIGHTS"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsSpec:
    """Where a pretrained file comes from.

    Attributes:
        name: registry key, e.g. ``"dlib_landmarks_68"``.
        filename: the file's name in the cache directory.
        url: where to download it. When ``archive_member`` is set, the URL is a zip archive and the
            file is that member of it.
        sha256: hex digest of the file (not of the archive), or ``None`` when unknown.
        package_resource: ``(package, relative path)`` of a copy shipped in an installed package.
        archive_member: path of the file inside the zip archive at ``url``.
        name_has_sha256_prefix: the file name follows torch hub's ``<stem>-<sha256 prefix>.<ext>``
            convention (torchvision weights do); without a full ``sha256`` that prefix is checked.
        downloadable: whether ``url`` serves the file itself; ``False`` for a web page where a person
            downloads it (e.g. a Google Drive view page), so ``allow_download`` cannot fetch it.
    """

    name: str
    filename: str
    url: str
    sha256: str | None = None
    package_resource: tuple[str, str] | None = None
    archive_member: str | None = None
    name_has_sha256_prefix: bool = False
    downloadable: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.filename:
            raise ValueError("WeightsSpec needs a name and a filename")
        if Path(self.filename).name != self.filename:
            raise ValueError(f"WeightsSpec.filename must be a bare file name, got {self.filename!r}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"WeightsSpec.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")


class WeightsNotFoundError(FileNotFoundError):
    """A weights file is not available locally (and downloading is off or failed)."""


class WeightsChecksumError(ValueError):
    """A downloaded or checked file does not have the expected sha256."""


def default_cache_dir() -> Path:
    """``$CELEBREF_WEIGHTS`` if set, else ``~/.cache/celebref``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "celebref"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_digest(spec: WeightsSpec) -> tuple[str, bool] | None:
    """``(digest, is_prefix)`` to check a file against, or ``None`` when nothing is known.

    Without a full sha256, a torch-hub style name ``<stem>-<hex>.<ext>`` carries a sha256 prefix when the
    spec says so.
    """
    if spec.sha256 is not None:
        return spec.sha256, False
    if spec.name_has_sha256_prefix:
        match = re.search(r"-([0-9a-f]{8,})\.", spec.filename)
        if match is None:
            raise ValueError(f"{spec.filename}: no '-<hex>.' sha256 prefix in the file name")
        return match.group(1), True
    return None


def verify_file(spec: WeightsSpec, path: str | Path) -> None:
    """Raise :class:`WeightsChecksumError` when ``path`` does not match the spec's hash (if any)."""
    expected = _expected_digest(spec)
    if expected is None:
        return
    digest, is_prefix = expected
    actual = sha256_of(path)
    ok = actual.startswith(digest) if is_prefix else actual == digest
    if not ok:
        what = "sha256 prefix" if is_prefix else "sha256"
        raise WeightsChecksumError(
            f"{spec.filename}: {what} mismatch for {path}: expected {digest}, got {actual}"
        )


def package_file(package: str, relative: str) -> Path | None:
    """Path of ``relative`` inside an installed top-level ``package``, or ``None``.

    Uses ``importlib.util.find_spec`` so the package module itself is not imported (some, like
    ``face_recognition_models``, import ``pkg_resources`` at import time, which may be missing);
    falls back to ``importlib.resources`` for packages that are not plain directories.
    """
    try:
        module_spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        module_spec = None
    if module_spec is None:
        return None
    locations = [Path(p) for p in (module_spec.submodule_search_locations or [])]
    for location in locations:
        candidate = location / relative
        if candidate.is_file():
            return candidate
    if locations and all(location.is_dir() for location in locations):
        return None  # a plain directory package that does not ship the file
    try:
        import importlib.resources as resources

        candidate = resources.files(package).joinpath(relative)
        if candidate.is_file():
            return Path(str(candidate))
    except Exception:  # missing package or one that fails to import: not shipped here
        return None
    return None


def _missing_message(spec: WeightsSpec, cache_dir: Path, searched: list[str]) -> str:
    if spec.archive_member:
        how = f"download {spec.url}, extract '{spec.archive_member}' from it"
    elif not spec.downloadable:
        how = f"download it by hand from {spec.url} (allow_download cannot fetch that page)"
    else:
        how = f"download it from {spec.url}"
    # allow_download is offered only where it can fetch the file
    download = ", or enable allow_download" if spec.downloadable else ""
    return (
        f"model weights '{spec.filename}' ({spec.name}) not found. To fix: {how} and put it in "
        f"{cache_dir}/ (or set ${ENV_VAR} to the directory holding it, or pass an explicit path in "
        f"params.yaml{download}). Looked in: {'; '.join(searched)}"
    )


def _download(spec: WeightsSpec, target: Path) -> None:
    """Fetch ``spec.url`` into ``target`` atomically, verifying the hash before the final rename."""
    with atomic_path(target) as tmp:
        if spec.archive_member:
            with tempfile.TemporaryDirectory(dir=target.parent) as work:
                archive = Path(work) / "archive.zip"
                _fetch(spec.url, archive)
                with zipfile.ZipFile(archive) as zf:
                    try:
                        member = zf.open(spec.archive_member)
                    except KeyError as exc:
                        raise WeightsNotFoundError(
                            f"{spec.url} has no member '{spec.archive_member}'"
                        ) from exc
                    with member, tmp.open("wb") as out:
                        shutil.copyfileobj(member, out, _CHUNK)
        else:
            _fetch(spec.url, tmp)
        verify_file(spec, tmp)


def _fetch(url: str, dest: Path) -> None:
    if not url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"refusing to download from {url!r}: allowed schemes are https, http, file")
    with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def resolve_weights(
    spec: WeightsSpec,
    explicit_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
    *,
    verify: bool = False,
) -> Path:
    """Find the local file for ``spec`` (see the module docstring for the order).

    Args:
        spec: what to look for.
        explicit_path: a path given by the user; when set it must exist (no silent fallback).
        cache_dir: directory of cached weights; default :func:`default_cache_dir`.
        allow_download: fetch ``spec.url`` into the cache directory when nothing local is found.
        verify: also check the hash of a file found locally (downloads are always checked).

    Returns:
        The path of an existing file.

    Raises:
        WeightsNotFoundError: nothing found; the message names the file, its URL and the directory.
        WeightsChecksumError: a downloaded (or, with ``verify``, a local) file has the wrong hash.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"explicit weights path for '{spec.filename}' ({spec.name}) does not exist: {path}. "
                f"The file can be downloaded from {spec.url}"
            )
        if verify:
            verify_file(spec, path)
        return path

    searched: list[str] = []
    cached = cache / spec.filename
    searched.append(str(cached))
    if cached.is_file():
        if verify:
            verify_file(spec, cached)
        return cached

    if spec.package_resource is not None:
        package, relative = spec.package_resource
        searched.append(f"package {package}:{relative}")
        shipped = package_file(package, relative)
        if shipped is not None:
            if verify:
                verify_file(spec, shipped)
            return shipped

    if allow_download and spec.downloadable:
        try:
            _download(spec, cached)
        except WeightsChecksumError:
            raise
        except (OSError, zipfile.BadZipFile) as exc:
            raise WeightsNotFoundError(
                f"download of '{spec.filename}' from {spec.url} failed ({type(exc).__name__}: {exc}). "
                + _missing_message(spec, cache, searched)
            ) from exc
        return cached

    raise WeightsNotFoundError(_missing_message(spec, cache, searched))


# --------------------------------------------------------------------------------------------------
# Registry of known weights (name -> spec), filled explicitly.
# --------------------------------------------------------------------------------------------------

KNOWN_WEIGHTS: dict[str, WeightsSpec] = {}


def register_weights(spec: WeightsSpec) -> WeightsSpec:
    """Add ``spec`` to :data:`KNOWN_WEIGHTS`; a duplicate name raises ``ValueError``."""
    if spec.name in KNOWN_WEIGHTS:
        raise ValueError(f"weights '{spec.name}' are already registered")
    KNOWN_WEIGHTS[spec.name] = spec
    return spec


def get_spec(name: str) -> WeightsSpec:
    """The registered spec called ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return KNOWN_WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weights '{name}'; known: {', '.join(sorted(KNOWN_WEIGHTS))}") from None


_FRM = "face_recognition_models"
_FRM_URL = "https://github.com/ageitgey/face_recognition_models/raw/master/face_recognition_models/models/"

DLIB_LANDMARKS_68 = register_weights(
    WeightsSpec(
        name="dlib_landmarks_68",
        filename="shape_predictor_68_face_landmarks.dat",
        url=_FRM_URL + "shape_predictor_68_face_landmarks.dat",
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        package_resource=(_FRM, "models/shape_predictor_68_face_landmarks.dat"),
    )
)
DLIB_RESNET_EMBEDDER = register_weights(
    WeightsSpec(
        name="dlib_resnet_embedder",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        url=_FRM_URL + "dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        package_resource=(_FRM, "models/dlib_face_recognition_resnet_model_v1.dat"),
    )
)
DLIB_MMOD_DETECTOR = register_weights(
    WeightsSpec(
        name="dlib_mmod_detector",
        filename="mmod_human_face_detector.dat",
        url=_FRM_URL + "mmod_human_face_detector.dat",
        sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
        package_resource=(_FRM, "models/mmod_human_face_detector.dat"),
    )
)
ARCFACE_BUFFALO_L = register_weights(
    WeightsSpec(
        name="arcface_buffalo_l",
        filename="w600k_r50.onnx",
        url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        archive_member="w600k_r50.onnx",
    )
)
FAN_2D = register_weights(
    WeightsSpec(
        name="fan_2d",
        filename="2DFAN4-cd938726ad.zip",
        url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",
    )
)
LPIPS_ALEX_LINEAR = register_weights(
    WeightsSpec(
        name="lpips_alex_linear",
        filename="lpips_v0.1_alex.pth",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        package_resource=("lpips", "weights/v0.1/alex.pth"),
    )
)
TORCHVISION_ALEXNET = register_weights(
    WeightsSpec(
        name="torchvision_alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        name_has_sha256_prefix=True,
    )
)
TORCHVISION_VGG19 = register_weights(
    WeightsSpec(
        name="torchvision_vgg19",
        filename="vgg19-dcbb9e9d.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        name_has_sha256_prefix=True,
    )
)
FID_INCEPTION = register_weights(
    WeightsSpec(
        name="fid_inception",
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    )
)
#: The ASFFNet512 release (csxmli2016/ASFFNet512): linked from its README on Google Drive, no direct URL.
ASFFNET512_OFFICIAL = register_weights(
    WeightsSpec(
        name="asffnet512_official",
        filename="ASFFNet512.pth",
        url="https://drive.google.com/file/d/13kjKkS6SQjiVYSxD4HfUhIiYv_oNGHsD/view?usp=sharing",
        downloadable=False,
    )
)
DMDNET_OFFICIAL = register_weights(
    WeightsSpec(
        name="dmdnet_official",
        filename="DMDNet.pth",
        url="https://github.com/csxmli2016/DMDNet/releases/download/v1/DMDNet.pth",
    )
)
