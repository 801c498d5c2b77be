"""The dataset card written beside every build: what is in it, how it was made, and its terms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from celebref.atomic import atomic_write_text
from curate.config import CurateConfig

__all__ = ["dataset_card", "write_dataset_card"]

TERMS = (
    "The images were collected from the web and belong to their owners; the manifest keeps each image's "
    "source URL. This dataset is for non-commercial research use only. If you own an image and want it "
    "removed, delete its row from the identity list or URL list and rebuild."
)


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(none)_\n"
    header = "| " + " | ".join(map(str, frame.columns)) + " |\n"
    rule = "|" + "---|" * len(frame.columns) + "\n"
    body = "".join("| " + " | ".join(map(str, row)) + " |\n" for row in frame.itertuples(index=False))
    return header + rule + body


def dataset_card(manifest: pd.DataFrame, rejected: pd.DataFrame, config: CurateConfig) -> str:
    """Markdown card: counts per split and identity, criteria and params, rejection tally, terms."""
    if manifest.empty:
        per_split = pd.DataFrame(columns=["split", "identities", "images"])
        per_identity = pd.DataFrame(columns=["split", "identity", "name", "images"])
    else:
        per_split = (
            manifest.groupby("split")
            .agg(identities=("identity", "nunique"), images=("identity", "size"))
            .reset_index()
        )
        per_identity = manifest.groupby(["split", "identity", "name"]).size().rename("images").reset_index()
    tally = rejected["reason"].value_counts().rename_axis("reason").rename("photos").reset_index()
    params = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return (
        "# CelebRef-HQ-style reference face dataset\n\n"
        f"{len(manifest)} aligned {config.size}×{config.size} RGB faces of "
        f"{manifest['identity'].nunique() if not manifest.empty else 0} identities, "
        "split by identity (no identity appears in two splits).\n\n"
        "## Splits\n\n" + _table(per_split) + "\n## Identities\n\n" + _table(per_identity) + "\n"
        "## How it was built\n\n"
        f"1. Faces detected with `{config.faces.detector}`; the FFHQ alignment quad must be at least "
        f"{config.min_face} px in the source photo.\n"
        f"2. Sharpness: Laplacian variance of the face box resized to {config.sharpness_size} px square, "
        f"at least {config.min_sharpness}; then the top {config.sharpness_keep_fraction:.0%} per identity.\n"
        f"3. Identity consistency with `{config.faces.embedder}` embeddings: photos farther than "
        f"{config.identity_threshold} from their identity's median are dropped, iterating until every kept "
        "photo is nearest its own identity. In group photos the face nearest the identity is used.\n"
        f"4. Near-duplicates (difference hash within {config.duplicate_hamming} bits) removed, keeping the "
        f"sharpest; at most {config.max_images} images per identity.\n"
        f"5. FFHQ-style alignment to {config.size}×{config.size}; 68 landmarks re-detected on the aligned "
        f"image with `{config.faces.landmarker}`.\n"
        f"6. Identities with fewer than {config.min_images} images dropped; split weights {config.split}, "
        f"seed {config.seed}.\n\n"
        "## Rejections\n\n" + _table(tally) + "\nEvery rejected photo is listed in `rejected.parquet` with "
        "its reason and detail; provenance of kept images is in `manifest.parquet`.\n\n"
        "## Parameters\n\n```yaml\n" + params + "```\n\n## Terms\n\n" + TERMS + "\n"
    )


def write_dataset_card(
    path: Path, manifest: pd.DataFrame, rejected: pd.DataFrame, config: CurateConfig
) -> None:
    atomic_write_text(path, dataset_card(manifest, rejected, config))
