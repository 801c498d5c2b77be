"""The numbers the paper reports on the CelebRef-HQ test set, as data (for side-by-side reporting).

Source: Li et al., "Learning Dual Memory Dictionaries for Blind Face Restoration", IEEE TPAMI 2023
(arXiv 2210.08160): Table 1 (generic methods, official models; CelebRef-HQ columns only), Table 2
(reference-based restoration) and Table 3 (ablations; no Id column). The paper's Id is the cosine similarity
of ArcFace embeddings. Values are typed in as printed (``.878`` is 0.878).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAPER_SOURCE", "PAPER_ID_EMBEDDER", "PaperRow", "PaperTable", "PAPER_TABLES", "paper_table"]

PAPER_SOURCE = "paper (TPAMI 2023, CelebRef-HQ)"
PAPER_ID_EMBEDDER = "arcface"

_TASKS = ("x4", "x8")


@dataclass(frozen=True)
class PaperRow:
    """One row: ``values[(task, metric)]`` with tasks ``x4`` / ``x8`` and metric keys of the benchmark."""

    method: str
    values: dict[tuple[str, str], float]
    note: str = ""


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: its number, caption and the metric keys it reports, in column order."""

    number: int
    title: str
    metrics: tuple[str, ...]
    rows: tuple[PaperRow, ...]

    def row(self, method: str) -> PaperRow:
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(f"Table {self.number} has no row {method!r}; rows: {[r.method for r in self.rows]}")


def _row(
    method: str, metrics: tuple[str, ...], x4: tuple[float, ...], x8: tuple[float, ...], note: str = ""
) -> PaperRow:
    if not len(x4) == len(x8) == len(metrics):
        raise ValueError(f"{method}: {len(metrics)} metrics but {len(x4)} / {len(x8)} values")
    values = {
        (task, m): v
        for task, vals in zip(_TASKS, (x4, x8), strict=True)
        for m, v in zip(metrics, vals, strict=True)
    }
    return PaperRow(method, values, note)


_FULL = ("psnr", "ssim", "lpips", "fid", "id")
_NO_ID = ("psnr", "ssim", "lpips", "fid")

TABLE1 = PaperTable(
    1,
    "Generic restoration (official models of the generic methods), CelebRef-HQ test set",
    _FULL,
    (
        _row("PULSE", _FULL, (22.44, 0.795, 0.353, 80.37, 0.324), (22.36, 0.793, 0.361, 85.10, 0.291)),
        _row("HiFaceGAN", _FULL, (28.40, 0.895, 0.180, 16.72, 0.729), (25.97, 0.846, 0.269, 31.59, 0.549)),
        _row("DFDNet", _FULL, (26.44, 0.834, 0.183, 9.75, 0.702), (25.04, 0.798, 0.242, 14.72, 0.515)),
        _row("PSFRGAN", _FULL, (28.05, 0.883, 0.184, 11.20, 0.730), (26.52, 0.854, 0.229, 15.52, 0.542)),
        _row("GPEN", _FULL, (28.31, 0.895, 0.179, 10.35, 0.712), (25.77, 0.841, 0.210, 14.71, 0.503)),
        _row("GFPGAN", _FULL, (28.27, 0.894, 0.172, 10.33, 0.689), (25.76, 0.841, 0.207, 14.69, 0.455)),
        _row("Ours^g", _FULL, (28.91, 0.901, 0.169, 10.31, 0.715), (27.03, 0.870, 0.201, 14.56, 0.504)),
    ),
)

TABLE2 = PaperTable(
    2,
    "Specific (reference-based) restoration, CelebRef-HQ test set",
    _FULL,
    (
        _row("GFRNet*", _FULL, (27.59, 0.878, 0.203, 19.86, 0.733), (26.21, 0.850, 0.243, 19.32, 0.625)),
        _row("ASFFNet*", _FULL, (28.03, 0.883, 0.182, 13.85, 0.784), (26.55, 0.855, 0.241, 15.71, 0.706)),
        _row("Ours^g", _FULL, (28.91, 0.901, 0.169, 10.31, 0.715), (27.03, 0.870, 0.201, 14.56, 0.504)),
        _row("Ours (Full)", _FULL, (28.97, 0.902, 0.166, 10.30, 0.793), (27.37, 0.875, 0.194, 14.43, 0.715)),
    ),
)

TABLE3 = PaperTable(
    3,
    "Ablations, CelebRef-HQ test set",
    _NO_ID,
    (
        _row("Ours(0)†", _NO_ID, (26.31, 0.832, 0.231, 21.26), (24.69, 0.797, 0.292, 32.44), "Y = 0"),
        _row("Ours(32)", _NO_ID, (28.63, 0.893, 0.180, 11.01), (26.65, 0.856, 0.206, 14.97), "Y = 32"),
        _row("Ours(64)", _NO_ID, (28.90, 0.900, 0.171, 10.92), (27.01, 0.869, 0.199, 14.63), "Y = 64"),
        _row(
            "Ours(128)",
            _NO_ID,
            (28.97, 0.902, 0.166, 10.30),
            (27.37, 0.875, 0.194, 14.43),
            "Y = 128, the full model",
        ),
        _row("Ours(256)", _NO_ID, (28.98, 0.902, 0.165, 10.31), (27.39, 0.876, 0.193, 14.41), "Y = 256"),
        _row(
            "Ours(OB)",
            _NO_ID,
            (27.67, 0.880, 0.201, 18.64),
            (26.25, 0.851, 0.240, 19.29),
            "random init + backward update only",
        ),
        _row(
            "w/o F", _NO_ID, (28.60, 0.897, 0.173, 14.51), (27.02, 0.869, 0.201, 15.37), "no forward update"
        ),
        _row(
            "w/o B", _NO_ID, (28.36, 0.896, 0.174, 14.55), (26.63, 0.862, 0.205, 15.46), "no backward update"
        ),
        _row(
            "w/o T",
            _NO_ID,
            (28.24, 0.884, 0.176, 13.56),
            (26.81, 0.863, 0.237, 15.58),
            "no transform modules",
        ),
        _row("1T", _NO_ID, (28.83, 0.897, 0.173, 12.11), (27.09, 0.870, 0.213, 14.88), "1 transform module"),
        _row("2T", _NO_ID, (28.90, 0.901, 0.171, 10.77), (27.12, 0.871, 0.200, 14.50), "2 transform modules"),
        _row(
            "Ours^s",
            _NO_ID,
            (28.43, 0.887, 0.180, 13.67),
            (26.83, 0.860, 0.234, 15.53),
            "specific dictionary only",
        ),
    ),
)

PAPER_TABLES: dict[int, PaperTable] = {t.number: t for t in (TABLE1, TABLE2, TABLE3)}


def paper_table(number: int) -> PaperTable:
    """Table ``number`` (1, 2 or 3); other numbers raise ``ValueError``."""
    if number not in PAPER_TABLES:
        raise ValueError(f"unknown table {number}; allowed: {', '.join(map(str, PAPER_TABLES))}")
    return PAPER_TABLES[number]
