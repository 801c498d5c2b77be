"""End-to-end test of ``python -m dmdnet.restore`` with fixture-rule weights saved to a checkpoint file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from celebref.hardware import capabilities
from celebref.images import read_image, write_png
from dmdnet.dictionary import SpecificDictionary
from dmdnet.restore import main
from tests.paths import DMDNET_FIXTURE

FIXTURE = DMDNET_FIXTURE


@pytest.fixture(scope="module")
def weights(dmdnet_fixture_checkpoint: Path) -> Path:
    return dmdnet_fixture_checkpoint


def test_cli_restores_specific_and_reports_bad_inputs(weights, tmp_path, capsys):
    torch.set_num_threads(2)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_png(inputs / "a_lq.png", read_image(FIXTURE / "lq.png"))
    hq = read_image(FIXTURE / "hq.png")
    photo = np.full((640, 700, 3), 128, np.uint8)
    photo[80:592, 150:662] = hq  # an unaligned photo: detect, align, restore, paste back
    write_png(inputs / "b_photo.png", photo)
    write_png(inputs / "c_blank.png", np.full((300, 300, 3), 90, np.uint8))
    (inputs / "d_broken.png").write_bytes(b"not an image")
    out, dict_path = tmp_path / "out", tmp_path / "person.dict.pt"

    rc = main(
        [
            "--input", str(inputs), "--references", str(FIXTURE / "refs"),
            "--save-dictionary", str(dict_path), "--output", str(out), "--weights", str(weights),
            "--batch", "2", "--check",
        ]
    )  # fmt: skip
    summary = capsys.readouterr()
    assert rc == 1  # two inputs failed, the others were restored
    assert "restored 2, failed 2" in summary.out
    assert "no face" in summary.err and "unreadable" in summary.err

    # dlib finds the fixture's landmarks again, so the aligned LQ gives the official specific output
    restored = read_image(out / "a_lq.png").astype(np.int16)
    reference = np.load(FIXTURE / "out_specific.npy")[0].transpose(1, 2, 0)
    expected = np.round(np.clip((reference + 1) / 2, 0, 1) * 255).astype(np.int16)
    assert np.abs(restored - expected).max() <= 1
    assert (out / "a_lq_check.png").is_file()

    pasted = read_image(out / "b_photo.png")
    assert pasted.shape == photo.shape
    assert np.array_equal(pasted[:40], photo[:40])  # outside the face crop the photo is unchanged
    assert np.abs(pasted[200:500, 250:550].astype(int) - photo[200:500, 250:550]).mean() > 5

    saved = SpecificDictionary.load(dict_path)
    assert saved.num_references == 3
    assert saved.references == ("ref_0.png", "ref_1.png", "ref_2.png")


def test_cli_missing_and_corrupt_checkpoint(tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, read_image(FIXTURE / "lq.png"))
    rc = main(
        ["--input", str(image), "--output", str(tmp_path / "o"), "--weights", str(tmp_path / "DMDNet.pth")]
    )
    assert rc == 2
    assert "releases/download/v1/DMDNet.pth" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage")
    rc = main(["--input", str(image), "--output", str(tmp_path / "o"), "--weights", str(bad)])
    assert rc == 2
    assert "cannot read DMDNet checkpoint" in capsys.readouterr().err


def test_cli_refuses_bf16_where_the_cpu_cannot_run_it(weights, tmp_path, capsys, monkeypatch):
    # an AVX2-only CPU: a clear error before any file is read or written, exit code 2
    no_bf16 = dataclasses.replace(capabilities("cpu"), bf16=False, bf16_missing="no AVX-512 (test)")
    monkeypatch.setattr("dmdnet.restore.capabilities", lambda device: no_bf16)
    image = tmp_path / "lq.png"
    write_png(image, read_image(FIXTURE / "lq.png"))
    out = tmp_path / "out"
    args = ["--input", str(image), "--output", str(out), "--weights", str(weights), "--precision", "bf16"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "precision bf16 is not supported on cpu" in err and "--precision fp32" in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_without_cuda_says_so(weights, tmp_path, capsys):
    image = tmp_path / "lq.png"
    write_png(image, read_image(FIXTURE / "lq.png"))
    out = tmp_path / "out"
    assert (
        main(["--input", str(image), "--output", str(out), "--weights", str(weights), "--device", "cuda"])
        == 2
    )
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not out.exists()
