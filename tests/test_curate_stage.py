"""The curate stage end to end on real photos with real dlib models (offline).

Photos of eleven other people are planted among the genuine photos of two identities, the way a web image
search returns them. Identity consistency must remove exactly the planted photos and lose no genuine one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate.build import REJECTION_REASONS
from curate.build import run as curate_run
from curate.config import CurateConfig
from curate.dataset import CelebRefHQ

IDENTITY_REASONS = {"identity_outlier", "several_faces"}


@pytest.fixture(scope="module")
def curated(planted_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("built") / "celebref"
    # Thresholds low enough that every planted face reaches the identity step (small faces included).
    config = CurateConfig(
        min_face=64, min_sharpness=0.0, min_images=1, split={"train": 1, "test": 1}, workers=2
    )
    curate_run(config, planted_raw, out)
    raw = pd.read_parquet(planted_raw / "manifest.parquet")
    raw = raw[raw["status"] == "ok"].assign(planted=lambda f: f["url"].str.contains("/_distractors/"))
    return out, raw


def _outcome(out: Path, raw: pd.DataFrame) -> pd.DataFrame:
    kept = pd.read_parquet(out / "manifest.parquet")[["source_sha256"]].assign(reason="kept")
    rejected = pd.read_parquet(out / "rejected.parquet")[["source_sha256", "reason"]]
    both = pd.concat([kept, rejected]).rename(columns={"source_sha256": "sha256"})
    return raw.merge(both, on="sha256", how="left", validate="one_to_one")


def test_planted_photos_removed_and_no_genuine_photo_lost(curated: tuple[Path, pd.DataFrame]) -> None:
    out, raw = curated
    outcome = _outcome(out, raw)
    assert outcome["reason"].notna().all(), "every raw photo is either kept or rejected with a reason"
    planted = outcome[outcome["planted"]]
    genuine = outcome[~outcome["planted"]]
    assert len(planted) == 11
    # Every planted photo with a detectable face is removed by identity consistency, none is kept.
    assert (planted["reason"] != "kept").all()
    faced = planted[~planted["reason"].isin({"no_face", "decode_error"})]
    assert len(faced) >= 9 and faced["reason"].isin(IDENTITY_REASONS).all()
    # No genuine photo is removed as another person; only detector limits may drop one.
    assert not genuine["reason"].isin(IDENTITY_REASONS).any(), genuine[["url", "reason"]]
    assert (genuine["reason"] == "kept").sum() >= 7


def test_crowd_photo_yields_the_right_person(curated: tuple[Path, pd.DataFrame]) -> None:
    out, raw = curated
    manifest = pd.read_parquet(out / "manifest.parquet")
    crowd_sha = raw.loc[raw["url"].str.endswith("barack_obama/4.jpg"), "sha256"].item()
    row = manifest[manifest["source_sha256"] == crowd_sha]
    assert len(row) == 1 and row["faces_in_photo"].item() >= 2
    assert row["identity_distance"].item() < 0.4
    # The kept face is Obama: its embedding matches the other Obama images better than Biden's.
    from faces.analysis import FaceAnalyzerConfig, build_face_analyzer

    analyzer = build_face_analyzer(FaceAnalyzerConfig())
    emb = {
        rec.split + rec.identity + str(rec.index): analyzer.embedder.embed(
            *_load(rec.image_path, rec.landmarks_path)
        )
        for split in ("train", "test")
        for rec in CelebRefHQ(out, split).records
    }
    ident = row["identity"].item()
    crowd_key = row["split"].item() + ident + str(row["index"].item())
    own = [v for k, v in emb.items() if ident in k and k != crowd_key]
    other = [v for k, v in emb.items() if ident not in k]
    d_own = np.mean([np.linalg.norm(emb[crowd_key] - v) for v in own])
    d_other = np.mean([np.linalg.norm(emb[crowd_key] - v) for v in other])
    assert d_own < 0.5 < d_other


def _load(image_path: Path, landmarks_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from celebref.images import read_image
    from curate.dataset import read_landmarks

    return read_image(image_path), read_landmarks(landmarks_path)


def test_outputs_follow_the_data_contract(curated: tuple[Path, pd.DataFrame]) -> None:
    out, _ = curated
    manifest = pd.read_parquet(out / "manifest.parquet")
    rejected = pd.read_parquet(out / "rejected.parquet")
    assert set(rejected["reason"]) <= set(REJECTION_REASONS)
    assert (rejected["detail"].str.len() > 0).all()
    for split in ("train", "test"):
        ds = CelebRefHQ(out, split)
        assert set(ds.identities) == set(manifest.loc[manifest["split"] == split, "identity"])
        item = ds[0]
        assert item.image.shape == (512, 512, 3)
        # Landmarks re-detected on the aligned image sit where FFHQ alignment puts the eyes.
        eyes_y = item.landmarks[36:48, 1].mean()
        assert 180 < eyes_y < 280
    train_ids = set(manifest.loc[manifest["split"] == "train", "identity"])
    test_ids = set(manifest.loc[manifest["split"] == "test", "identity"])
    assert train_ids and test_ids and not train_ids & test_ids
    card = (out / "README.md").read_text()
    assert "non-commercial research" in card and "identity_outlier" in card
    assert (out / "config.yaml").is_file()


def test_worker_count_does_not_change_the_output(planted_raw: Path, tmp_path: Path) -> None:
    config = CurateConfig(min_face=200, min_sharpness=0.0, min_images=1, split={"train": 1, "test": 1})
    a = curate_run(config.model_copy(update={"workers": 1}), planted_raw, tmp_path / "a")
    b = curate_run(config.model_copy(update={"workers": 2}), planted_raw, tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
    for rel in a["path"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_missing_raw_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="raw manifest not found"):
        curate_run(CurateConfig(), tmp_path, tmp_path / "out")
