"""``python -m dmdnet.restore`` on awkward inputs: each gets a clear message and the batch goes on.

(References without a usable face stop the run: ``tests/test_restore_user_errors.py``.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from celebref.images import read_image, write_png
from dmdnet.restore import main
from tests.paths import DMDNET_FIXTURE


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    torch.set_num_threads(2)
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_several_faces_and_border_face(dmdnet_fixture_checkpoint: Path, tmp_path: Path, capsys) -> None:
    hq = read_image(DMDNET_FIXTURE / "hq.png")
    inputs = tmp_path / "in"
    # Two people side by side (the same face at two sizes): the larger one is restored, and the log says so.
    pair = np.full((560, 900, 3), 120, np.uint8)
    small = hq[::2, ::2]
    pair[20:532, 10:522] = hq
    pair[150:406, 600:856] = small
    write_png(inputs / "a_two_faces.png", pair)
    # An aligned-size crop whose face runs off the bottom edge, taken as aligned (--aligned): landmarks fall
    # outside the crop. (Without --aligned its landmarks are far from the alignment's: it would be aligned.)
    shifted = np.full_like(hq, 120)
    shifted[200:] = hq[:312]
    write_png(inputs / "b_border.png", shifted)
    out = tmp_path / "out"

    rc, stdout, stderr = _run(
        [
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--weights",
            str(dmdnet_fixture_checkpoint),
            "--aligned",
        ],
        capsys,
    )
    assert "faces found, using the largest" in stderr
    assert "b_border.png" in stderr and "border" in stderr
    assert rc == 1 and "restored 1" in stdout  # one input failed, the other was restored
    restored = read_image(out / "a_two_faces.png")
    assert restored.shape == pair.shape
    # The larger face was restored and pasted back; the smaller face is left as it was.
    assert np.abs(restored[100:450, 100:450].astype(int) - pair[100:450, 100:450]).mean() > 3
    assert np.array_equal(restored[150:406, 620:856], pair[150:406, 620:856])
    assert not (out / "b_border.png").exists()
