"""``python -m dmdnet.restore --model asffnet``: reference choice, batching, paste-back and its errors.

A small ASFFNet (fixture-rule weights in a ``generator.pth``) and a stand-in for the dlib face preparer
that knows each face's landmarks, so the reference each input gets is fixed by the test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from asffnet.fixture_weights import generate_fixture_state_dict
from asffnet.inference import ASFFNetRestorer
from asffnet.network import ASFFNetConfig
from asffnet.official import official_shapes
from asffnet.selection import reference_scores
from asffnet.trained import load_asffnet, save_asffnet
from celebref.images import read_image, write_png
from dmdnet.boxes import component_boxes
from dmdnet.inference import InferenceConfig, to_uint8
from dmdnet.restore import ALIGNED_SIZE, FaceError, PreparedFace, main
from faces.align import paste_back
from tests.paths import DMDNET_FIXTURE

FIXTURE = DMDNET_FIXTURE
SMALL = ASFFNetConfig(
    stage_channels=(8, 16, 32), channels=16, mask_channels=(8, 8, 16, 16, 16), asff_blocks=1
)
PHOTO_OFFSET = (80, 150)  # (y, x) of the face crop in a photo that is not an aligned 512² face


def _key(aligned: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(aligned).tobytes()).digest()


class FakePreparer:
    """Known landmarks per aligned face (by its pixels); any other face is "not found".

    A 512² image is an aligned face; a larger photo holds one at :data:`PHOTO_OFFSET` (a pure shift).
    """

    def __init__(self, landmarks: dict[bytes, np.ndarray]) -> None:
        self.landmarks = landmarks

    def prepare(self, image: np.ndarray) -> PreparedFace:
        if image.shape[:2] == (ALIGNED_SIZE, ALIGNED_SIZE):
            aligned, matrix = image, None
        else:
            y, x = PHOTO_OFFSET
            aligned = image[y : y + ALIGNED_SIZE, x : x + ALIGNED_SIZE]
            matrix = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y]])
        marks = self.landmarks.get(_key(aligned))
        if marks is None:
            raise FaceError("no face found")
        return PreparedFace(aligned, marks, component_boxes(marks), matrix, image)


@pytest.fixture(scope="module")
def asffnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``generator.pth`` of :data:`SMALL` in the official layout, fixture-rule weights."""
    path = tmp_path_factory.mktemp("asffnet_weights") / "generator.pth"
    return save_asffnet(generate_fixture_state_dict(official_shapes(SMALL)), SMALL, path)


def _face(image: str, landmarks: str) -> tuple[np.ndarray, np.ndarray]:
    return read_image(FIXTURE / image), np.loadtxt(FIXTURE / landmarks)


@pytest.fixture
def faces(monkeypatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name → (aligned image, landmarks) of the faces the fake preparer knows (it replaces dlib's)."""
    known = {
        "lq": _face("lq.png", "lq_landmarks.txt"),
        # the HQ face with ref_1's landmarks, lower lip 10 px down: ref_1 fits it best
        "hq": _face("hq.png", "refs/ref_1_landmarks.txt"),
        "ref_0": _face("refs/ref_0.png", "refs/ref_0_landmarks.txt"),
        "ref_1": _face("refs/ref_1.png", "refs/ref_1_landmarks.txt"),
    }
    known["hq"][1][[55, 56, 57, 58, 59, 65, 66, 67], 1] += 10
    table = {_key(image): marks for image, marks in known.values()}
    monkeypatch.setattr("dmdnet.restore.FacePreparer", lambda: FakePreparer(table))
    return known


def _references(folder: Path, faces: dict, names: tuple[str, ...] = ("ref_0", "ref_1")) -> Path:
    for name in names:
        write_png(folder / f"{name}.png", faces[name][0])
    write_png(folder / "blank.png", np.full((300, 300, 3), 200, np.uint8))  # no face: skipped
    return folder


def test_asffnet_restores_each_input_with_its_best_reference(asffnet_weights, faces, tmp_path, capsys):
    torch.set_num_threads(2)
    refs = _references(tmp_path / "refs", faces)
    inputs = tmp_path / "in"
    write_png(inputs / "a_lq.png", faces["lq"][0])
    photo = np.full((640, 700, 3), 128, np.uint8)  # not aligned: restored in its crop and pasted back
    y, x = PHOTO_OFFSET
    photo[y : y + ALIGNED_SIZE, x : x + ALIGNED_SIZE] = faces["hq"][0]
    write_png(inputs / "b_photo.png", photo)
    (inputs / "c_broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"

    rc = main(
        [
            "--model", "asffnet", "--input", str(inputs), "--references", str(refs),
            "--output", str(out), "--weights", str(asffnet_weights), "--batch", "2", "--check",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 1 and "restored 2, failed 1 (unreadable: 1)" in captured.out
    assert "reference blank.png: skipped (no face found)" in captured.err

    # each input gets the reference of lowest score: ref_0 for the LQ face, ref_1 for the photo
    pool = [faces["ref_0"][1], faces["ref_1"][1]]
    chosen = [int(np.argmin(reference_scores(faces[name][1], pool))) for name in ("lq", "hq")]
    assert chosen == [0, 1]
    assert "a_lq.png: reference ref_0.png" in captured.err
    assert "b_photo.png: reference ref_1.png" in captured.err

    restorer = ASFFNetRestorer(load_asffnet(asffnet_weights), InferenceConfig(batch_size=2))
    expected = to_uint8(
        restorer.restore(
            np.stack([faces["lq"][0], faces["hq"][0]]),
            np.stack([faces["lq"][1], faces["hq"][1]]),
            np.stack([faces["ref_0"][0], faces["ref_1"][0]]),
            np.stack(pool),
        )
    )
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_lq.png", "a_lq_check.png", "b_photo.png", "b_photo_check.png"]
    restored = read_image(out / "a_lq.png")
    assert restored.shape == faces["lq"][0].shape and np.array_equal(restored, expected[0])
    pasted = read_image(out / "b_photo.png")
    assert pasted.shape == photo.shape
    assert np.array_equal(pasted, paste_back(photo, expected[1], np.array([[1.0, 0, -x], [0, 1.0, -y]])))
    assert np.array_equal(pasted[:40], photo[:40])  # outside the face crop the photo is unchanged


def test_asffnet_without_a_usable_reference_stops(asffnet_weights, faces, tmp_path, capsys):
    refs = _references(tmp_path / "refs", faces, names=())  # only the blank image
    image = tmp_path / "lq.png"
    write_png(image, faces["lq"][0])
    out = tmp_path / "out"
    args = ["--model", "asffnet", "--input", str(image), "--references", str(refs), "--output", str(out)]
    assert main([*args, "--weights", str(asffnet_weights)]) == 2
    err = capsys.readouterr().err
    assert "reference blank.png: skipped" in err
    assert f"error: reference folder {refs}: no usable face" in err
    assert not out.exists()


def test_asffnet_missing_weights_name_the_file(faces, tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, faces["lq"][0])
    weights = tmp_path / "ASFFNet512.pth"
    args = ["--model", "asffnet", "--input", str(image), "--references", str(tmp_path)]
    assert main([*args, "--output", str(tmp_path / "o"), "--weights", str(weights)]) == 2
    assert f"ASFFNet checkpoint not found: {weights}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--model asffnet needs --references"),
        (["--references", "refs", "--dictionary", "p.dict.pt"], "--dictionary: a DMDNet specific dictionary"),
        (["--references", "refs", "--save-dictionary", "p.dict.pt"], "--save-dictionary: a DMDNet specific"),
    ],
)
def test_asffnet_argument_errors(extra, message, tmp_path, capsys):
    args = ["--model", "asffnet", "--input", "in", "--output", str(tmp_path / "o"), "--weights", "w.pth"]
    with pytest.raises(SystemExit) as exc:
        main([*args, *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_gfrnet_restores_every_input_with_the_most_frontal_reference(faces, tmp_path, capsys):
    from gfrnet.frontal import most_frontal
    from gfrnet.network import GFRNet, GFRNetConfig
    from gfrnet.trained import load_gfrnet, save_gfrnet

    torch.manual_seed(0)
    weights = save_gfrnet(
        GFRNet(config=GFRNetConfig(warp_channels=(4, 8), rec_channels=(4, 8))), tmp_path / "g.pth"
    )
    refs = _references(tmp_path / "refs", faces)
    inputs = tmp_path / "in"
    write_png(inputs / "a_lq.png", faces["lq"][0])
    write_png(inputs / "b_hq.png", faces["hq"][0])
    out = tmp_path / "out"
    rc = main(
        [
            "--model", "gfrnet", "--input", str(inputs), "--references", str(refs),
            "--output", str(out), "--weights", str(weights), "--batch", "2",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0 and "restored 2, failed 0" in captured.out
    k = most_frontal([faces["ref_0"][1], faces["ref_1"][1]])
    frontal = ("ref_0", "ref_1")[k]
    assert f"frontal reference: {frontal}.png" in captured.err
    # the library's inference path (channels-last, inference mode), so the kernels and the rounding match
    from celebref.hardware import capabilities
    from dmdnet.inference import as_network_input, precision_context, prepare_for_inference

    config = InferenceConfig(batch_size=2)
    model = prepare_for_inference(load_gfrnet(weights), config, capabilities("cpu"))
    with precision_context(config):
        lq = as_network_input(np.stack([faces["lq"][0], faces["hq"][0]]), config)
        ref = as_network_input(np.stack([faces[frontal][0]] * 2), config)
        expected = to_uint8(model(lq, ref).restored)
    assert np.array_equal(read_image(out / "a_lq.png"), expected[0])
    assert np.array_equal(read_image(out / "b_hq.png"), expected[1])
    with pytest.raises(SystemExit) as exc:  # no --references: an argparse error
        main(["--model", "gfrnet", "--input", str(inputs), "--output", str(out), "--weights", str(weights)])
    assert exc.value.code == 2 and "--model gfrnet needs --references" in capsys.readouterr().err
