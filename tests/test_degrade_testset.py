"""The fixed ×4 / ×8 test sets (worker-count independence, recorded draws) and on-the-fly training pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from celebref.images import read_image, write_png
from degrade.__main__ import main
from degrade.config import DegradeConfig
from degrade.model import apply, image_rng, sample_params
from degrade.pairs import DegradedPairs
from degrade.testset import TABLE_COLUMNS, TABLE_NAME, params_from_row, run


def _synthetic_face(seed: int, size: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6, 3)
    base = np.stack(
        [128 + 80 * np.sin(5 * xx + phase[0]), 128 + 80 * np.cos(4 * yy + phase[1]), 100 + 0 * xx], -1
    )
    base[:, :, 2] += 60 * np.sin(3 * (xx + yy) + phase[2])
    texture = rng.normal(0, 10, (size // 4, size // 4, 3)).repeat(4, 0).repeat(4, 1)
    return np.clip(base + texture, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/test/<identity>/<n>.png`` (512² RGB) + landmarks files: 2 identities, 4 images."""
    root = tmp_path_factory.mktemp("celebref")
    layout = {"alice_a": [1, 2], "bob_b": [1, 3]}
    seed = 0
    for identity, numbers in layout.items():
        for n in numbers:
            write_png(root / "test" / identity / f"{n}.png", _synthetic_face(seed))
            (root / "test" / identity / f"{n}.landmarks.txt").write_text("0 0\n" * 68)
            seed += 1
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built_sets(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The ×4 and ×8 sets built once with 1 worker (through the CLI) and once with 2 workers."""
    out1 = tmp_path_factory.mktemp("lq1")
    params = out1.parent / "params_lq1.yaml"
    params.write_text(yaml.safe_dump({"degrade": {"seed": 11, "workers": 1}, "other": {"x": 1}}))
    main(["--params", str(params), "--dataset", str(tiny_dataset), "--split", "test", "--out", str(out1)])
    out2 = tmp_path_factory.mktemp("lq2")
    run(DegradeConfig(seed=11, workers=2), tiny_dataset, out2, split="test")
    return {1: out1, 2: out2}


def test_sets_identical_with_one_and_two_workers(built_sets: dict[int, Path]) -> None:
    for task in ("test_x4", "test_x8"):
        one, two = _files(built_sets[1] / task), _files(built_sets[2] / task)
        assert sorted(one) == sorted(two)
        assert len([k for k in one if k.endswith(".png")]) == 4
        assert TABLE_NAME in one and "degrade_config.yaml" in one
        for name in one:
            assert one[name] == two[name], f"{task}/{name} differs between 1 and 2 workers"


def test_lq_sizes_and_table(built_sets: dict[int, Path], tiny_dataset: Path) -> None:
    for task, side in (("test_x4", 128), ("test_x8", 64)):
        folder = built_sets[1] / task
        table = pd.read_csv(folder / TABLE_NAME, keep_default_na=False)
        assert list(table.columns) == TABLE_COLUMNS
        assert table["image_id"].tolist() == ["alice_a/1", "alice_a/2", "bob_b/1", "bob_b/3"]
        assert (table["status"] == "ok").all()
        assert (table["scale"] == 512 / side).all()
        for _, row in table.iterrows():
            lq = read_image(folder / row["file"])
            assert lq.shape == (side, side, 3)
            # one row reproduces its image exactly from the ground truth
            gt = read_image(tiny_dataset / "test" / row["file"])
            np.testing.assert_array_equal(apply(gt, params_from_row(row)), lq)
            # and the row is the draw of (seed, image id), with the scale fixed
            drawn = sample_params(
                image_rng(11, row["image_id"]), DegradeConfig().ranges.with_scale(512 / side)
            )
            assert params_from_row(row) == drawn
            assert 1.0 <= row["sigma_blur"] <= 3.0 and 0 <= row["sigma_noise"] <= 15
            assert 50 <= int(row["jpeg_quality"]) <= 100


def test_x4_and_x8_share_draws_except_scale(built_sets: dict[int, Path]) -> None:
    x4 = pd.read_csv(built_sets[1] / "test_x4" / TABLE_NAME)
    x8 = pd.read_csv(built_sets[1] / "test_x8" / TABLE_NAME)
    cols = ["sigma_blur", "sigma_noise", "jpeg_quality", "seed"]
    pd.testing.assert_frame_equal(x4[cols], x8[cols])


def test_bad_image_is_a_failed_row(tmp_path: Path, tiny_dataset: Path) -> None:
    root = tmp_path / "ds"
    write_png(root / "test" / "carol_c" / "1.png", _synthetic_face(9))
    (root / "test" / "carol_c" / "2.png").write_bytes(b"not a png")
    write_png(root / "test" / "carol_c" / "3.png", _synthetic_face(9, size=256))
    run(DegradeConfig(seed=1, test_scales={"x8": 8.0}), root, tmp_path / "lq")
    table = pd.read_csv(tmp_path / "lq" / "test_x8" / TABLE_NAME, keep_default_na=False)
    assert table["status"].tolist() == ["ok", "failed", "failed"]
    assert "cannot decode" in table["error"][1] and "expected 512x512" in table["error"][2]
    assert sorted(p.name for p in (tmp_path / "lq" / "test_x8" / "carol_c").iterdir()) == ["1.png"]


def test_rerun_replaces_output_whole(tmp_path: Path, tiny_dataset: Path) -> None:
    out = tmp_path / "lq"
    stale = out / "test_x8" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("left over")
    run(DegradeConfig(seed=2, test_scales={"x8": 8.0}), tiny_dataset, out)
    assert not stale.exists() and (out / "test_x8" / TABLE_NAME).is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left


# --- on-the-fly training pairs ----------------------------------------------------------------------


class _Images:
    def __init__(self, n: int) -> None:
        self.images = [_synthetic_face(100 + i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        return self.images[i], f"item{i}"


def test_pairs_shapes_ranges_and_reproducibility() -> None:
    pairs = DegradedPairs(_Images(3), DegradeConfig(), seed=5)
    lq, gt, params = pairs[1]
    assert lq.shape == gt.shape == (3, 512, 512) and lq.dtype == gt.dtype == torch.float32
    assert lq.min() >= -1 and lq.max() <= 1 and gt.min() >= -1 and gt.max() <= 1
    expected_gt = torch.from_numpy(_synthetic_face(101)).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(gt, expected_gt)
    assert (lq - gt).abs().mean() > 0.01  # degraded
    lq2, _, params2 = pairs[1]
    assert params2 == params and torch.equal(lq, lq2)
    assert pairs[2][2] != params
    pairs.set_epoch(1)
    assert pairs[1][2] != params  # a new draw each epoch
    pairs.set_epoch(0)
    assert pairs[1][2] == params
    with pytest.raises(IndexError):
        pairs[3]


def test_pairs_same_in_loader_workers() -> None:
    pairs = DegradedPairs(_Images(4), DegradeConfig(), seed=8)
    serial = [pairs[i] for i in range(4)]
    loader = DataLoader(pairs, batch_size=2, num_workers=2, collate_fn=DegradedPairs.collate)
    batches = list(loader)
    lq = torch.cat([b[0] for b in batches])
    assert lq.shape == (4, 3, 512, 512)
    assert torch.equal(lq, torch.stack([s[0] for s in serial]))
    assert [p for b in batches for p in b[2]] == [s[2] for s in serial]


def test_pairs_reject_bad_items() -> None:
    class Bad:
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[np.ndarray]:
            return (np.zeros((256, 256, 3), np.uint8),)

    with pytest.raises(ValueError, match="expected RGB uint8"):
        DegradedPairs(Bad(), DegradeConfig(), seed=0)[0]
