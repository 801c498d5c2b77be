"""``python -m dmdnet.restore`` on the mistakes users make, and on inputs that are not what they look like.

A tiny DMDNet (4 channels, randomly initialised, saved as a ``generator.pth``) stands in for the released
model: these tests check what the command decides, writes and says, not the restoration. Faces go through
the real dlib preparer. Names added for these checks are imported inside the tests that use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from celebref.hardware import UnsupportedDevice, capabilities
from celebref.images import read_image, write_png
from dmdnet.dictionary import SpecificDictionary
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.restore import ALIGNED_SIZE, FacePreparer, main
from dmdnet.trained import save_generator
from tests.paths import DEMO_FACES, DMDNET_FIXTURE

SMALL = DMDNetConfig(channels=4, key_ratio=2, items=2)
WIDE = DMDNetConfig(channels=8, key_ratio=2, items=2)
#: A portrait (a face among shoulders and background), not an aligned face; resized to 512×512 below.
PORTRAIT = DEMO_FACES / "_distractors" / "kamala_harris.jpg"
README = Path(__file__).resolve().parents[1] / "README.md"


def _tiny(path: Path, config: DMDNetConfig, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_generator(DMDNet(config=config).eval(), path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory.mktemp("tiny_a") / "generator.pth", SMALL, seed=0)


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network with other weights (another training run)."""
    return _tiny(tmp_path_factory.mktemp("tiny_b") / "generator.pth", SMALL, seed=1)


@pytest.fixture(scope="module")
def wide_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another network (twice the channels)."""
    return _tiny(tmp_path_factory.mktemp("tiny_wide") / "generator.pth", WIDE, seed=2)


@pytest.fixture(scope="module")
def portrait_512() -> np.ndarray:
    """A 512×512 resize of a whole portrait photo."""
    return cv2.resize(read_image(PORTRAIT), (ALIGNED_SIZE, ALIGNED_SIZE), interpolation=cv2.INTER_AREA)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    torch.set_num_threads(2)
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _one_error(err: str) -> str:
    """The run's only ``error:`` line (and no traceback)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _refs(folder: Path, names: tuple[str, ...] = ("ref_0", "ref_1", "ref_2")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_png(folder / f"{name}.png", read_image(DMDNET_FIXTURE / "refs" / f"{name}.png"))
    return folder


# --- 512×512 inputs: aligned face or not ---------------------------------------------------------------


def test_preparer_takes_only_aligned_crops_as_they_are(portrait_512):
    from dmdnet.restore import ALIGNED_TOLERANCE, alignment_offset

    preparer = FacePreparer()
    crops = [DMDNET_FIXTURE / "lq.png", DMDNET_FIXTURE / "hq.png"]
    crops += sorted((DMDNET_FIXTURE / "refs").glob("ref_*.png"))
    for path in crops:  # the aligned faces of the test data are used as they are
        image = read_image(path)
        face = preparer.prepare(image)
        assert face.matrix is None and face.aligned is image, path.name
    face = preparer.prepare(portrait_512)  # a resized portrait is aligned like any photo
    assert face.matrix is not None and face.original is portrait_512
    photo_landmarks, _ = preparer._largest_landmarks(portrait_512)
    assert alignment_offset(photo_landmarks) > 3 * ALIGNED_TOLERANCE
    forced = FacePreparer(assume_aligned=True).prepare(portrait_512)  # --aligned
    assert forced.matrix is None and forced.aligned is portrait_512


def test_512_portrait_is_aligned_and_pasted_back_unless_aligned_is_given(
    weights, portrait_512, tmp_path, capsys
):
    inputs = tmp_path / "in"
    write_png(inputs / "portrait.png", portrait_512)
    rc, out, _ = _run(["--input", inputs, "--output", tmp_path / "out", "--weights", weights], capsys)
    assert rc == 0 and "restored 1, failed 0" in out
    restored = read_image(tmp_path / "out" / "portrait.png")
    unchanged = np.all(restored == portrait_512, axis=2)
    assert unchanged.mean() > 0.3  # the frame around the face is the photo's own
    assert not unchanged[200:330, 200:330].all()  # the face was restored

    rc, out, _ = _run(
        ["--input", inputs, "--output", tmp_path / "forced", "--weights", weights, "--aligned"], capsys
    )
    assert rc == 0 and "restored 1" in out
    forced = read_image(tmp_path / "forced" / "portrait.png")
    assert np.all(forced == portrait_512, axis=2).mean() < 0.05  # taken as a face crop: all replaced


# --- output names ------------------------------------------------------------------------------------------


def test_inputs_of_the_same_name_get_their_own_outputs(weights, tmp_path, capsys):
    lq, hq = read_image(DMDNET_FIXTURE / "lq.png"), read_image(DMDNET_FIXTURE / "hq.png")
    inputs = tmp_path / "in"
    write_png(inputs / "face.png", lq)
    cv2.imwrite(str(inputs / "face.jpg"), cv2.cvtColor(hq, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = tmp_path / "out"
    rc, stdout, _ = _run(["--input", inputs, "--output", out, "--weights", weights, "--check"], capsys)
    assert rc == 0 and "restored 2, failed 0" in stdout
    names = ["face_jpg.png", "face_jpg_check.png", "face_png.png", "face_png_check.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    # each check image shows its own input (the tiny network's outputs hardly depend on the input)
    assert np.abs(read_image(out / "face_png_check.png").astype(int) - lq).mean() < 2
    assert np.abs(read_image(out / "face_jpg_check.png").astype(int) - hq).mean() < 5


def test_existing_outputs_are_kept_unless_overwrite(weights, tmp_path, capsys):
    inputs = tmp_path / "in"
    write_png(inputs / "a.png", read_image(DMDNET_FIXTURE / "lq.png"))
    out = tmp_path / "out"
    mine = np.full((8, 8, 3), 7, np.uint8)  # a file of the user's that has the output's name
    write_png(out / "a.png", mine)
    rc, stdout, stderr = _run(["--input", inputs, "--output", out, "--weights", weights], capsys)
    assert np.array_equal(read_image(out / "a.png"), mine)
    assert "restored 0" in stdout and "skipped 1 (output exists" in stdout and "--overwrite" in stderr

    rc, stdout, _ = _run(["--input", inputs, "--output", out, "--weights", weights, "--overwrite"], capsys)
    assert rc == 0 and "restored 1, failed 0" in stdout
    assert read_image(out / "a.png").shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3)

    saved = tmp_path / "person.dict.pt"
    saved.write_bytes(b"someone's file")
    args = ["--input", inputs, "--references", _refs(tmp_path / "refs"), "--save-dictionary", saved]
    rc, _, stderr = _run([*args, "--output", tmp_path / "o2", "--weights", weights], capsys)
    assert rc == 2 and "--overwrite" in _one_error(stderr)
    assert saved.read_bytes() == b"someone's file" and not (tmp_path / "o2").exists()


# --- specific dictionaries and the weights that built them ---------------------------------------------


def test_saved_dictionary_records_its_checkpoint_and_refuses_other_weights(
    weights, other_weights, wide_weights, tmp_path, capsys
):
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    saved = tmp_path / "person.dict.pt"
    args = ["--input", image, "--references", _refs(tmp_path / "refs"), "--save-dictionary", saved]
    rc, _, _ = _run([*args, "--output", tmp_path / "out", "--weights", weights], capsys)
    assert rc == 0
    record = SpecificDictionary.load(saved).metadata["checkpoint"]
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["config"]["channels"] == SMALL.channels and record["file"] == "generator.pth"

    for other in (other_weights, wide_weights):  # same network other weights; another network
        out = tmp_path / f"out_{other.parent.name}"
        rc, _, stderr = _run(
            ["--input", image, "--dictionary", saved, "--output", out, "--weights", other], capsys
        )
        line = _one_error(stderr)
        assert rc == 2 and "another checkpoint" in line and str(saved) in line
        assert not out.exists()

    # a dictionary saved before dictionaries recorded their checkpoint: checked by its shapes
    legacy = tmp_path / "legacy.dict.pt"
    dataclasses.replace(SpecificDictionary.load(saved), metadata={}).save(legacy)
    out = tmp_path / "out_legacy"
    rc, _, stderr = _run(
        ["--input", image, "--dictionary", legacy, "--output", out, "--weights", wide_weights], capsys
    )
    assert rc == 2 and "does not fit these weights" in _one_error(stderr) and not out.exists()
    rc, stdout, stderr = _run(
        ["--input", image, "--dictionary", legacy, "--output", out, "--weights", weights], capsys
    )
    assert rc == 0 and "restored 1" in stdout and "records no checkpoint" in stderr


def test_dictionary_and_references_are_merged_and_the_log_says_so(weights, tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    refs = _refs(tmp_path / "refs", ("ref_0", "ref_1"))
    saved = tmp_path / "person.dict.pt"
    args = ["--input", image, "--references", refs, "--save-dictionary", saved, "--weights", weights]
    assert _run([*args, "--output", tmp_path / "out"], capsys)[0] == 0
    rc, _, stderr = _run(
        [
            "--input",
            image,
            "--dictionary",
            saved,
            "--references",
            refs,
            "--output",
            tmp_path / "o2",
            "--weights",
            weights,
        ],
        capsys,
    )
    assert rc == 0
    assert f"2 references from --dictionary {saved} + 2 from --references {refs}, merged: 4" in stderr


# --- no usable references, no images --------------------------------------------------------------------


def test_dmdnet_references_without_a_usable_face_stop(weights, tmp_path, capsys):
    refs = tmp_path / "refs"
    write_png(refs / "blank.png", np.full((300, 300, 3), 200, np.uint8))
    (refs / "notes.txt").write_text("not an image")
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    out = tmp_path / "out"
    args = ["--input", image, "--references", refs, "--save-dictionary", tmp_path / "d.pt"]
    rc, stdout, stderr = _run([*args, "--output", out, "--weights", weights], capsys)
    line = _one_error(stderr)
    assert rc == 2 and str(refs) in line and "no usable face" in line
    assert "reference blank.png: skipped" in stderr
    assert not out.exists() and not (tmp_path / "d.pt").exists() and "restored" not in stdout


def test_input_folder_without_images_is_an_error(weights, tmp_path, capsys):
    inputs = tmp_path / "in"
    write_png(inputs / "person" / "a.png", read_image(DMDNET_FIXTURE / "lq.png"))  # one level down only
    rc, _, stderr = _run(["--input", inputs, "--output", tmp_path / "out", "--weights", weights], capsys)
    line = _one_error(stderr)
    assert rc == 2 and "no images found" in line and str(inputs) in line and "1 subfolder" in line
    (tmp_path / "empty").mkdir()
    rc, _, stderr = _run(
        ["--input", tmp_path / "empty", "--output", tmp_path / "out", "--weights", weights], capsys
    )
    assert rc == 2 and "no images found" in _one_error(stderr) and "empty" in stderr
    assert not (tmp_path / "out").exists()


# --- the wrong checkpoint ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asffnet_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ASFFNet generator.pth trained here and a file in the official ASFFNet512.pth layout (zeros)."""
    from asffnet.network import ASFFNetConfig
    from asffnet.official import official_shapes
    from asffnet.trained import save_asffnet

    small = ASFFNetConfig(
        stage_channels=(8, 16, 32), channels=16, mask_channels=(8, 8, 16, 16, 16), asff_blocks=1
    )
    state = {k: torch.zeros(shape) for k, shape in official_shapes(small).items()}
    folder = tmp_path_factory.mktemp("asffnet")
    torch.save({"params": state}, folder / "ASFFNet512.pth")
    return {
        "trained": save_asffnet(state, small, folder / "generator.pth"),
        "official": folder / "ASFFNet512.pth",
    }


@pytest.mark.parametrize(
    ("model", "file", "wanted"),
    [
        ("gfrnet", "dmdnet", ["a DMDNet checkpoint", "'dmdnet-generator'", "expected", "'gfrnet-generator'"]),
        ("dmdnet", "asffnet_trained", ["an ASFFNet checkpoint", "not a DMDNet checkpoint"]),
        (
            "dmdnet",
            "asffnet_official",
            ["ASFFNet checkpoint", "ASFFNet512.pth layout", "not a DMDNet checkpoint"],
        ),
        ("asffnet", "dmdnet", ["a DMDNet checkpoint", "not an ASFFNet checkpoint"]),
        ("dmdnet", "readme", ["not a checkpoint file (could not be read by torch.load"]),
        ("gfrnet", "readme", ["not a checkpoint file (could not be read by torch.load"]),
    ],
)
def test_wrong_checkpoint_says_what_the_file_is(
    model, file, wanted, weights, asffnet_files, tmp_path, capsys
):
    files = {
        "dmdnet": weights,
        "asffnet_trained": asffnet_files["trained"],
        "asffnet_official": asffnet_files["official"],
        "readme": README,
    }
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    args = ["--model", model, "--input", image, "--references", _refs(tmp_path / "refs", ("ref_0",))]
    rc, _, stderr = _run([*args, "--output", tmp_path / "out", "--weights", files[file]], capsys)
    line = _one_error(stderr)
    assert rc == 2 and stderr.strip() == line  # nothing but that line
    for text in wanted:
        assert text in line
    for noise in ("missing key", "Please file an issue", "non-tensor"):
        assert noise not in line
    assert not (tmp_path / "out").exists()


# --- bad arguments: one line, exit code 2, nothing written ------------------------------------------------


def test_output_naming_a_file_is_an_error(weights, tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    taken = tmp_path / "restored.png"
    taken.write_bytes(b"a file")
    rc, _, stderr = _run(["--input", image, "--output", taken, "--weights", weights], capsys)
    assert rc == 2 and str(taken) in _one_error(stderr) and "not a folder" in stderr
    assert taken.read_bytes() == b"a file"


def test_unknown_device_is_an_error(weights, tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    out = tmp_path / "out"
    rc, _, stderr = _run(["--input", image, "--output", out, "--weights", weights, "--device", "gpu"], capsys)
    line = _one_error(stderr)
    assert rc == 2 and "'gpu'" in line and "cuda" in line
    assert not out.exists()


def test_missing_references_folder_is_named(weights, tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, read_image(DMDNET_FIXTURE / "lq.png"))
    refs = tmp_path / "no_such_refs"
    args = ["--input", image, "--references", refs, "--output", tmp_path / "out", "--weights", weights]
    rc, _, stderr = _run(args, capsys)
    assert rc == 2 and _one_error(stderr) == f"error: --references folder not found: {refs}"
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_cuda_capabilities_without_a_gpu_say_so():
    caps = capabilities("cuda")  # what the README suggests to run
    assert caps.available is False and "no CUDA device" in caps.missing
    assert caps.describe() == "cuda: not available (torch sees no CUDA device)"
    assert caps.bf16 is False
    with pytest.raises(UnsupportedDevice, match="torch sees no CUDA device"):
        caps.require("fp32")
    assert capabilities("cpu").available is True
    with pytest.raises(UnsupportedDevice, match="unknown device 'gpu'"):
        capabilities("gpu")


# --- help --------------------------------------------------------------------------------------------------


def test_help_examples_and_the_merge_are_stated(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "models/dmdnet/DMDNet.pth" not in text  # no command writes that file
    assert "--weights models/dmdnet/generator.pth" in text
    lines = text.splitlines()
    k = next(i for i, line in enumerate(lines) if "--model gfrnet --input" in line)
    assert lines[k].endswith("\\") and lines[k + 1].strip() == "--weights models/gfrnet/generator.pth"
    flat = " ".join(text.split())
    assert "with --references both are merged" in flat
    assert "--overwrite" in flat and "--aligned" in flat
