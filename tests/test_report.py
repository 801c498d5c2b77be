"""Benchmark report: tables from a small summary.json, the paper's numbers, CSV / LaTeX, figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark import report
from benchmark.evaluate import write_summary
from benchmark.figures import LABEL_HEIGHT, PAD, Column, FigureConfig, choose_images, compose_figure, crop_box
from benchmark.paper import PAPER_SOURCE, PAPER_TABLES, paper_table
from celebref.images import read_image, write_png
from curate.dataset import write_landmarks

LPIPS_REASON = "model weights 'alexnet-owt-7be5be79.pth' (torchvision_alexnet) not found. To fix: ..."
FID_REASON = "model weights 'pt_inception-2015-12-05-6726825d.pth' (fid_inception) not found. To fix: ..."
DMDNET_REASON = "model weights 'DMDNet.pth' (dmdnet_official) not found. To fix: ..."


def _landmarks() -> np.ndarray:
    """68 points: eyes around (195, 245) / (317, 245), mouth around (256, 380) on a 512 face."""
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(150, 360, 68), rng.uniform(200, 420, 68)], axis=1)
    a6 = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    pts[17:22] = [[160 + 17 * i, 205] for i in range(5)]
    pts[22:27] = [[282 + 17 * i, 205] for i in range(5)]
    pts[36:42] = np.stack([195 + 25 * np.cos(a6), 245 + 10 * np.sin(a6)], axis=1)
    pts[42:48] = np.stack([317 + 25 * np.cos(a6), 245 + 10 * np.sin(a6)], axis=1)
    a20 = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[48:68] = np.stack([256 + 45 * np.cos(a20), 380 + 18 * np.sin(a20)], axis=1)
    return pts


def _metric(key: str, label: str, value: float | None, hib: bool, reason: str | None = None) -> dict:
    if reason is not None:
        return {"label": label, "available": False, "reason": reason, "higher_is_better": hib}
    return {"label": label, "available": True, "value": value, "higher_is_better": hib, "n": 6}


def make_summary(root: Path, *, embedder: str = "dlib", methods: tuple[str, ...] = ("lq", "dmdnet")) -> dict:
    """A summary.json shaped like benchmark.evaluate's: lq measured, dmdnet unavailable."""
    id_label = f"Id({embedder})"

    def task(psnr: float, ssim: float, idv: float) -> dict[str, Any]:
        return {
            "n": 6,
            "seconds": 1.2,
            "results_dir": str(root / "results" / "lq"),
            "per_image_csv": "per_image/lq_x4.csv",
            "metrics": {
                "psnr": _metric("psnr", "PSNR", psnr, True),
                "ssim": _metric("ssim", "SSIM", ssim, True),
                "lpips": _metric("lpips", "LPIPS", None, False, LPIPS_REASON),
                "fid": _metric("fid", "FID", None, False, FID_REASON),
                "id": _metric("id", id_label, idv, True),
            },
        }

    entries = {
        "lq": {
            "slug": "lq",
            "description": "bicubic up-sampling of the LQ input (the floor)",
            "uses_references": False,
            "paper_rows": {},
            "available": True,
            "reason": None,
            "tasks": {"x4": task(26.4321, 0.80123, 0.9123), "x8": task(23.9876, 0.70456, 0.8456)},
        },
        "dmdnet": {
            "slug": "dmdnet",
            "description": "DMDNet, generic + specific dictionaries",
            "uses_references": True,
            "paper_rows": {"2": "Ours (Full)", "3": "Ours(128)"},
            "available": False,
            "reason": DMDNET_REASON,
            "tasks": {},
        },
    }
    return {
        "split": "test",
        "dataset": str(root / "celebref"),
        "lq": str(root / "lq"),
        "results": str(root / "results"),
        "size": 512,
        "tasks": ["x4", "x8"],
        "n": {"x4": 6, "x8": 6},
        "embedder": embedder,
        "metrics": [
            {"key": "psnr", "label": "PSNR", "higher_is_better": True, "available": True, "reason": None},
            {"key": "ssim", "label": "SSIM", "higher_is_better": True, "available": True, "reason": None},
            {
                "key": "lpips",
                "label": "LPIPS",
                "higher_is_better": False,
                "available": False,
                "reason": LPIPS_REASON,
            },
            {
                "key": "fid",
                "label": "FID",
                "higher_is_better": False,
                "available": False,
                "reason": FID_REASON,
            },
            {"key": "id", "label": id_label, "higher_is_better": True, "available": True, "reason": None},
        ],
        "conventions": {
            "psnr": "RGB on 0-255, float64, no border crop",
            "ssim": "Gaussian window 11, sigma 1.5",
            "lpips": "LPIPS v0.1, AlexNet",
            "fid": "pytorch-fid pool3 vs the paired ground truth",
            "id": f"cosine similarity of {embedder} identity embeddings",
        },
        "methods": {m: entries[m] for m in methods},
    }


def _write_summary(root: Path, summary: dict) -> Path:
    write_summary(summary, root / "metrics")  # summary.json (numbers) + run.json, as evaluate writes them
    return root / "metrics"


def _no_figures() -> report.ReportConfig:
    return report.ReportConfig(figures=FigureConfig(images=0))


# --- the paper's numbers ------------------------------------------------------------------------------


def test_paper_tables_are_complete_and_consistent() -> None:
    for table in PAPER_TABLES.values():
        for row in table.rows:
            assert set(row.values) == {(t, m) for t in ("x4", "x8") for m in table.metrics}, row.method
            for (_, metric), value in row.values.items():
                assert 0 < value < 1 if metric in ("ssim", "lpips", "id") else 9 < value < 90
    # the same model appears in several tables with the same numbers
    assert paper_table(1).row("Ours^g").values == paper_table(2).row("Ours^g").values
    full, ours128 = paper_table(2).row("Ours (Full)").values, paper_table(3).row("Ours(128)").values
    assert all(full[k] == v for k, v in ours128.items())
    assert paper_table(2).row("ASFFNet*").values[("x8", "id")] == 0.706
    assert paper_table(1).row("DFDNet").values[("x4", "fid")] == 9.75
    with pytest.raises(ValueError, match="unknown table 4"):
        paper_table(4)


# --- tables -------------------------------------------------------------------------------------------


def test_markdown_has_this_runs_values_the_papers_rows_and_reasons(tmp_path: Path) -> None:
    metrics = _write_summary(tmp_path, make_summary(tmp_path))
    written = report.run(_no_figures(), metrics, None, tmp_path / "reports")
    md = written["benchmark.md"].read_text(encoding="utf-8")
    # conventions header with N, and the embedder named
    assert "×4: N = 6, ×8: N = 6" in md
    assert "RGB on 0-255, float64, no border crop" in md and "Gaussian window 11" in md
    assert "Id(dlib) is not ArcFace" in md
    # this run's row, formatted like the paper, with n/a + note numbers for the missing metrics
    lq_rows = [line for line in md.splitlines() if line.startswith("| lq | this run |")]
    assert len(lq_rows) == 2  # Tables 1 and 2 (lq uses no references); not in Table 3
    cells = [c.strip() for c in lq_rows[0].strip("|").split("|")]
    assert cells[2:8] == ["26.43", "0.801", "n/a [1]", "n/a [2]", "0.912", "—"]
    assert cells[8:14] == ["23.99", "0.705", "n/a [1]", "n/a [2]", "0.846", "—"]
    assert f"1. LPIPS unavailable: {LPIPS_REASON}" in md
    assert f"2. FID unavailable: {FID_REASON}" in md
    # the unavailable method is a row of n/a with its reason
    assert "| dmdnet (= Ours (Full)) | this run | n/a [3] |" in md
    assert "| dmdnet (= Ours(128)) | this run | n/a [3] |" in md
    assert f"3. dmdnet unavailable: {DMDNET_REASON}" in md
    # the paper's rows, marked, with the paper's Id in its own ArcFace column
    assert f"| GFPGAN | {PAPER_SOURCE} | 28.27 | 0.894 | 0.172 | 10.33 | — | 0.689 | 25.76 |" in md
    assert f"| Ours (Full) | {PAPER_SOURCE} | 28.97 | 0.902 | 0.166 | 10.30 | — | 0.793 |" in md
    assert "×4 Id(dlib)↑ | ×4 Id(ArcFace)↑" in md
    assert md.count(PAPER_SOURCE) > 20


def test_arcface_run_shares_one_id_column_with_the_paper(tmp_path: Path) -> None:
    tables, _ = report.build_tables(make_summary(tmp_path, embedder="arcface", methods=("lq",)), (2,))
    (table,) = tables
    assert table.column_keys == ("psnr", "ssim", "lpips", "fid", "id")
    assert table.labels["id"] == "Id(ArcFace)"
    lq = next(r for r in table.rows if r.source == report.THIS_RUN)
    ours = next(r for r in table.rows if r.method == "Ours (Full)")
    assert math.isclose(lq.cells[("x4", "id")].value, 0.9123) and ours.cells[("x8", "id")].value == 0.715


def test_table3_lists_only_this_runs_variants_of_the_ablation(tmp_path: Path) -> None:
    summary = make_summary(tmp_path, methods=("lq",))
    tables, _ = report.build_tables(summary, (3,))
    assert [r.source for r in tables[0].rows] == [PAPER_SOURCE] * len(paper_table(3).rows)
    summary = make_summary(tmp_path, methods=("lq", "dmdnet"))
    tables, _ = report.build_tables(summary, (3,))
    assert [r.method for r in tables[0].rows if r.source == report.THIS_RUN] == ["dmdnet (= Ours(128))"]


def test_csv_and_latex_are_written(tmp_path: Path) -> None:
    metrics = _write_summary(tmp_path, make_summary(tmp_path))
    written = report.run(_no_figures(), metrics, None, tmp_path / "reports")
    table = pd.read_csv(written["benchmark.csv"])
    lq = table[(table.method == "lq") & (table.table == 1) & (table.task == "x8")].set_index("metric")
    assert math.isclose(lq.loc["psnr", "value"], 23.9876) and lq.loc["psnr", "n"] == 6
    assert pd.isna(lq.loc["lpips", "value"]) and LPIPS_REASON in lq.loc["lpips", "note"]
    assert lq.loc["id", "label"] == "Id(dlib)"
    paper = table[(table.source == PAPER_SOURCE) & (table.table == 2) & (table.method == "GFRNet*")]
    got = paper.set_index(["task", "metric"])["value"].dropna().to_dict()
    expected = {
        (t, "id_paper" if m == "id" else m): v for (t, m), v in paper_table(2).row("GFRNet*").values.items()
    }
    assert got == expected
    tex = written["benchmark.tex"].read_text(encoding="utf-8")
    assert r"\begin{tabular}{ll" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{6}{c}{$\times$4}" in tex
    assert r"Ours\^{}g & paper (TPAMI 2023, CelebRef-HQ) & 28.91 & 0.901" in tex
    assert r"lq & this run & 26.43 & 0.801 & n/a\textsuperscript{1}" in tex
    assert tex.count(r"\begin{table}") == 3


def test_missing_summary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"summary.json not found: run the evaluation first"):
        report.run(report.ReportConfig(), tmp_path / "metrics", None, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_cli_uses_the_report_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    metrics = _write_summary(tmp_path, make_summary(tmp_path))
    params = tmp_path / "params.yaml"
    params.write_text("report:\n  tables: [2]\n  figures: {images: 0}\n", encoding="utf-8")
    report.main(["--params", str(params), "--metrics", str(metrics), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "benchmark.md").read_text(encoding="utf-8")
    assert "## Table 2" in md and "## Table 1" not in md
    assert "report: 1 table(s), 0 figure(s)" in capsys.readouterr().out
    params.write_text("report:\n  tables: [5]\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:  # bad configuration: one line, exit 2
        report.main(["--params", str(params), "--metrics", str(metrics)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: report.tables: unknown table 5; allowed: 1, 2, 3\n"


# --- figures ------------------------------------------------------------------------------------------


def _face(seed: int, side: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 220, (8, 8, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def test_compose_figure_layout_and_content() -> None:
    tile = 128
    lq, out, gt = _face(1, 128), _face(2), _face(3)
    fig = compose_figure(
        [Column("LQ", lq, nearest=True), Column("m", out), Column("GT", gt)], _landmarks(), tile=tile
    )
    assert fig.dtype == np.uint8
    assert fig.shape == (
        PAD + LABEL_HEIGHT + tile + PAD + tile // 2 + PAD + tile // 2 + PAD,
        3 * tile + 4 * PAD,
        3,
    )
    top = PAD + LABEL_HEIGHT
    first = fig[top : top + tile, PAD : PAD + tile]
    np.testing.assert_array_equal(first, lq)  # 128 px LQ in a 128 px tile: unchanged
    second = fig[top : top + tile, 2 * PAD + tile : 2 * PAD + 2 * tile]
    expected = np.asarray(Image.fromarray(out).resize((tile, tile), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(second, expected)
    # the left-eye crop of the method column is the eye region of its image, enlarged
    eye = fig[top + tile + PAD : top + tile + PAD + tile // 2, 2 * PAD + tile : 2 * PAD + tile + tile // 2]
    assert eye.shape == (tile // 2, tile // 2, 3)
    assert not np.array_equal(
        eye, fig[top + tile + PAD : top + tile + PAD + tile // 2, PAD : PAD + tile // 2]
    )


def test_crop_box_reaches_the_aspect_and_stays_inside() -> None:
    assert crop_box((100, 100, 140, 120), 1.0, (512, 512, 3)) == (100, 90, 140, 130)
    assert crop_box((200, 300, 300, 340), 2.0, (512, 512, 3)) == (200, 295, 300, 345)
    x1, y1, x2, y2 = crop_box((490, 0, 512, 10), 1.0, (512, 512, 3))
    assert (x2 - x1, y2 - y1) == (22, 22) and x2 <= 512 and y1 >= 0


def test_choose_images_spreads_or_takes_the_given_ids() -> None:
    ids = [f"p{i:02d}/0" for i in reversed(range(11))]
    assert choose_images(ids, FigureConfig(images=3)) == ["p00/0", "p05/0", "p10/0"]
    assert choose_images(ids, FigureConfig(images=30)) == sorted(ids)
    assert choose_images(ids, FigureConfig(ids=("p03/0",))) == ["p03/0"]
    with pytest.raises(ValueError, match="not in the test set"):
        choose_images(ids, FigureConfig(ids=("nobody/1",)))


def test_report_figures_are_written_and_linked(tmp_path: Path) -> None:
    summary = make_summary(tmp_path)
    for n in range(2):
        write_png(tmp_path / "celebref" / "test" / "ann" / f"{n}.png", _face(10 + n))
        write_landmarks(tmp_path / "celebref" / "test" / "ann" / f"{n}.landmarks.txt", _landmarks())
        for task, side in (("x4", 128), ("x8", 64)):
            write_png(tmp_path / "lq" / f"test_{task}" / "ann" / f"{n}.png", _face(20 + n, side))
            write_png(tmp_path / "results" / "lq" / task / "ann" / f"{n}.png", _face(30 + n))
    metrics = _write_summary(tmp_path, summary)
    config = report.ReportConfig(figures=FigureConfig(images=1, tile=96))
    written = report.run(config, metrics, tmp_path / "results", tmp_path / "reports")
    figures = sorted(k for k in written if k.startswith("figures/"))
    assert figures == ["figures/x4_ann_0.png", "figures/x8_ann_0.png"]
    image = read_image(written["figures/x8_ann_0.png"])
    columns = 3  # LQ input, lq (dmdnet is unavailable: no column), ground truth
    assert image.shape == (
        PAD + LABEL_HEIGHT + 96 + PAD + 48 + PAD + 48 + PAD,
        columns * 96 + (columns + 1) * PAD,
        3,
    )
    md = written["benchmark.md"].read_text(encoding="utf-8")
    assert "![x4_ann_0](figures/x4_ann_0.png)" in md and "![x8_ann_0](figures/x8_ann_0.png)" in md
    (tmp_path / "results" / "lq" / "x4" / "ann" / "0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"results of 'lq' \(x4\) are missing"):
        report.run(config, metrics, tmp_path / "results", tmp_path / "reports2")
    assert not (tmp_path / "reports2").exists()
