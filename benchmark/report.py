"""Benchmark report: tables shaped like the paper's Tables 1–3, the paper's numbers alongside, and figures.

``python -m benchmark.report [--params params.yaml] [--metrics metrics] [--results results] [--out reports]``
reads ``<metrics>/summary.json`` (the numbers) and ``<metrics>/run.json`` (everything else), both written by
:mod:`benchmark.evaluate`, and writes ``<out>/benchmark.md``,
``<out>/benchmark.csv`` (long format: one row per table × method × task × metric), ``<out>/benchmark.tex``
and ``<out>/figures/*.png``, atomically (the whole folder is replaced).

Tables: rows are methods; columns ×4 PSNR / SSIM / LPIPS / FID / Id, then ×8 the same (Table 3 has no Id).
This run's rows come first, marked ``this run``; the paper's rows follow, marked with
:data:`benchmark.paper.PAPER_SOURCE`. Table 1 lists this run's methods that use no references, Table 2 all of
them, Table 3 only methods that reproduce one of the paper's ablation variants (the summary's ``paper_rows``:
the official ``dmdnet`` as ``Ours(128)``, a checkpoint as the row its training summary names); a run row
that claims a paper row is labelled ``<method> (= <paper row>)``. A metric that could not be computed shows
``n/a`` with a numbered note giving the reason. A network method's row carries a numbered note naming the
checkpoint it ran (path and description, from the record's ``checkpoint`` entry, e.g. ``official
DMDNet.pth`` or ``trained here: channels 16, items 8, generic+specific; variant ours64 (…), 300000 steps ×
batch 4 on 1000 faces``); the methods section and the CSV's ``checkpoint`` column give it too. Everything
comes from ``summary.json`` and ``run.json``: the report reads no model files. The Id column names its
embedder: unless this run used ArcFace, this run's ``Id(<embedder>)`` and the paper's ``Id(ArcFace)`` are
separate columns, because the two scales are not comparable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import field_validator

from benchmark.figures import Column, FigureConfig, choose_images, compose_figure, save_figure
from benchmark.methods import method_slug
from benchmark.paper import PAPER_ID_EMBEDDER, PAPER_SOURCE, PaperTable, paper_table
from celebref.atomic import atomic_dir
from celebref.cli import EXIT_OK, ArgumentParser, bad_input_exits
from celebref.config import MissingSectionError, StageConfig
from celebref.images import read_image
from celebref.params import load_stage_config
from curate.dataset import CelebRefHQ, read_landmarks

__all__ = [
    "ReportConfig",
    "ReportTable",
    "Cell",
    "Row",
    "THIS_RUN",
    "load_summary",
    "build_tables",
    "checkpoint_text",
    "render_markdown",
    "render_csv",
    "render_latex",
    "make_figures",
    "run",
    "main",
]

THIS_RUN = "this run"
#: Written by :func:`benchmark.evaluate.write_summary`: the numbers, and everything else about the run.
SUMMARY_NAME, RUN_NAME = "summary.json", "run.json"
NOT_REPORTED = "—"
_DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "fid": 2, "id": 3}
_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID"}
_HIGHER = {"psnr": True, "ssim": True, "lpips": False, "fid": False, "id": True}
_TASK_LABEL = {"x4": "×4", "x8": "×8"}


class ReportConfig(StageConfig):
    """The ``report`` section.

    Attributes:
        tables: which of the paper's tables to reproduce (1, 2, 3).
        figures: figure selection and size (:class:`benchmark.figures.FigureConfig`).
    """

    tables: tuple[int, ...] = (1, 2, 3)
    figures: FigureConfig = FigureConfig()

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for number in value:
            paper_table(number)  # ValueError naming the allowed tables
        return value


@dataclass(frozen=True)
class Cell:
    """One table cell: the value (``None`` when absent), its text, and a note number for ``n/a`` cells."""

    value: float | None
    text: str
    note: int | None = None


@dataclass(frozen=True)
class Row:
    """One table row; ``checkpoint``: the weights this run's method used, ``note`` its note number."""

    method: str
    source: str
    cells: dict[tuple[str, str], Cell]
    n: dict[str, int] = field(default_factory=dict)
    checkpoint: str | None = None
    note: int | None = None


@dataclass(frozen=True)
class ReportTable:
    """A rendered table: ``columns`` are ``(task, column key)`` in order, ``labels`` their headers."""

    number: int
    title: str
    tasks: tuple[str, ...]
    column_keys: tuple[str, ...]
    labels: dict[str, str]
    higher_is_better: dict[str, bool]
    rows: tuple[Row, ...]

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(t, k) for t in self.tasks for k in self.column_keys]


class _Notes:
    """Numbered footnotes, one per distinct text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def number(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def _numbers(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``summary.json``: ``{method: {task: {metric: number}}}``; ``ValueError`` for anything else."""
    numbers = json.loads(path.read_text(encoding="utf-8"))
    shaped = isinstance(numbers, dict) and all(
        isinstance(tasks, dict)
        and all(
            isinstance(values, dict)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values())
            for values in tasks.values()
        )
        for tasks in numbers.values()
    )
    if not shaped:
        raise ValueError(f"{path}: not an evaluation summary ({{method: {{task: {{metric: number}}}}}})")
    return numbers


def load_summary(metrics_root: str | Path) -> dict[str, Any]:
    """The evaluation record: ``<metrics_root>/run.json`` with the numbers of ``summary.json`` put back
    into its metric entries (``value``; ``None`` for an available metric without a number, e.g. not
    finite). A missing file is a ``FileNotFoundError`` that says what to run."""
    root = Path(metrics_root)
    for path in (root / SUMMARY_NAME, root / RUN_NAME):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: run the evaluation first (`dvc repro evaluate`, or `python -m "
                "benchmark.evaluate --params params.yaml --dataset data/celebref --lq data/lq --results "
                f"results --metrics {metrics_root}`)"
            )
    summary = json.loads((root / RUN_NAME).read_text(encoding="utf-8"))
    for key in ("methods", "tasks", "metrics", "n"):
        if not isinstance(summary, dict) or key not in summary:
            raise ValueError(f"{root / RUN_NAME}: not an evaluation record (no '{key}')")
    numbers = _numbers(root / SUMMARY_NAME)
    for name, entry in summary["methods"].items():
        for task, task_entry in (entry.get("tasks") or {}).items():
            values = numbers.get(name, {}).get(task, {})
            for key, metric in task_entry["metrics"].items():
                if metric.get("available", False):
                    metric["value"] = values.get(key)
    return summary


def _fmt(value: float, key: str) -> str:
    return f"{value:.{_DECIMALS[key]}f}"


def _id_label(embedder: str) -> str:
    return "Id(ArcFace)" if embedder == PAPER_ID_EMBEDDER else f"Id({embedder})"


def checkpoint_text(entry: Mapping[str, Any]) -> str | None:
    """The checkpoint of a summary's method entry as one line (``None``: the method has none)."""
    checkpoint = entry.get("checkpoint")
    if not checkpoint:
        return None
    path, description = checkpoint.get("path"), checkpoint.get("description") or ""
    if path and description:
        return f"{path} ({description})"
    return path or description or None


def _run_cell(entry: Mapping[str, Any] | None, key: str, task: str, notes: _Notes, label: str) -> Cell:
    if entry is None:
        return Cell(None, "n/a", notes.number(f"{label}: not computed in this run (not in evaluate.metrics)"))
    if not entry.get("available", False):
        return Cell(
            None, "n/a", notes.number(f"{entry.get('label', label)} unavailable: {entry.get('reason')}")
        )
    value = entry.get("value")
    if value is None:
        text = entry.get("note", "not finite")
        return Cell(None, "n/a", notes.number(f"{entry.get('label', label)} ({task}): {text}"))
    return Cell(float(value), _fmt(float(value), key))


def _columns(summary: Mapping[str, Any], paper: PaperTable) -> tuple[tuple[str, ...], dict[str, str]]:
    """Column keys and labels: metric keys, with ``id`` split into this run's and the paper's embedders."""
    keys: list[str] = []
    labels: dict[str, str] = {}
    run_labels = {m["key"]: m["label"] for m in summary["metrics"]}
    for key in paper.metrics:
        if key != "id":
            keys.append(key)
            labels[key] = run_labels.get(key, _NAMES[key])
            continue
        embedder = summary.get("embedder") or "unknown"
        if embedder == PAPER_ID_EMBEDDER:
            keys.append("id")
            labels["id"] = _id_label(PAPER_ID_EMBEDDER)
        else:
            keys += ["id", "id_paper"]
            labels["id"] = _id_label(embedder)
            labels["id_paper"] = _id_label(PAPER_ID_EMBEDDER)
    return tuple(keys), labels


def _run_rows(
    summary: Mapping[str, Any],
    paper: PaperTable,
    keys: Sequence[str],
    labels: Mapping[str, str],
    notes: _Notes,
) -> list[Row]:
    rows = []
    tasks = list(summary["tasks"])
    for name, entry in summary["methods"].items():
        paper_rows = entry.get("paper_rows") or {}
        if paper.number == 1 and entry.get("uses_references", False):
            continue
        if paper.number == 3 and str(paper.number) not in paper_rows:
            continue
        shown = name + (f" (= {paper_rows[str(paper.number)]})" if str(paper.number) in paper_rows else "")
        cells: dict[tuple[str, str], Cell] = {}
        n: dict[str, int] = {}
        for task in tasks:
            for key in keys:
                if key == "id_paper":
                    cells[(task, key)] = Cell(None, NOT_REPORTED)
                elif not entry.get("available", False):
                    cells[(task, key)] = Cell(
                        None, "n/a", notes.number(f"{name} unavailable: {entry['reason']}")
                    )
                else:
                    task_entry = entry["tasks"][task]
                    n[task] = task_entry["n"]
                    metric = task_entry["metrics"].get(key)
                    cells[(task, key)] = _run_cell(metric, key, task, notes, labels[key])
        checkpoint = checkpoint_text(entry)
        note = notes.number(f"{name}: checkpoint {checkpoint}") if checkpoint else None
        rows.append(Row(shown, THIS_RUN, cells, n, checkpoint, note))
    return rows


def _paper_rows(paper: PaperTable, tasks: Sequence[str], keys: Sequence[str]) -> list[Row]:
    rows = []
    for prow in paper.rows:
        cells = {}
        for task in tasks:
            for key in keys:
                if key == "id" and "id_paper" in keys:
                    cells[(task, key)] = Cell(None, NOT_REPORTED)  # the paper's Id is ArcFace: other column
                    continue
                metric = "id" if key == "id_paper" else key
                value = prow.values.get((task, metric))
                cells[(task, key)] = (
                    Cell(None, NOT_REPORTED) if value is None else Cell(value, _fmt(value, metric))
                )
        method = prow.method + (f" ({prow.note})" if prow.note and paper.number == 3 else "")
        rows.append(Row(method, PAPER_SOURCE, cells))
    return rows


def build_tables(
    summary: Mapping[str, Any], numbers: Sequence[int] = (1, 2, 3)
) -> tuple[list[ReportTable], list[str]]:
    """The report's tables and their numbered notes (note ``k`` is ``notes[k - 1]``).

    Only this run's tasks that the paper also has (``x4``, ``x8``) get columns; others are listed in the
    per-method section of the Markdown only.
    """
    notes = _Notes()
    tables = []
    for number in numbers:
        paper = paper_table(number)
        keys, labels = _columns(summary, paper)
        tasks = tuple(t for t in ("x4", "x8") if t in summary["tasks"]) or ("x4", "x8")
        rows = _run_rows(summary, paper, keys, labels, notes) + _paper_rows(paper, tasks, keys)
        higher = {k: _HIGHER["id" if k == "id_paper" else k] for k in keys}
        tables.append(ReportTable(number, paper.title, tasks, keys, labels, higher, tuple(rows)))
    return tables, notes.texts


def _arrow(table: ReportTable, key: str) -> str:
    return "↑" if table.higher_is_better[key] else "↓"


def _cell_md(cell: Cell) -> str:
    return f"{cell.text} [{cell.note}]" if cell.note else cell.text


def _markdown_table(table: ReportTable) -> list[str]:
    head = ["method", "source"] + [
        f"{_TASK_LABEL.get(t, t)} {table.labels[k]}{_arrow(table, k)}" for t, k in table.columns
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(table.columns)]
    for row in table.rows:
        method = f"{row.method} [{row.note}]" if row.note else row.method
        cells = [method, row.source] + [_cell_md(row.cells[c]) for c in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(
    summary: Mapping[str, Any], tables: Sequence[ReportTable], notes: Sequence[str], figures: Sequence[Path]
) -> str:
    """``benchmark.md``: header (data, N, conventions), per-method runs, Tables 1–3, notes, figures."""
    n = summary["n"]
    n_text = ", ".join(f"{_TASK_LABEL.get(t, t)}: N = {k}" for t, k in n.items())
    embedder = summary.get("embedder") or "unknown"
    conv = summary.get("conventions", {})
    labels = {m["key"]: m["label"] for m in summary["metrics"]}
    lines = [
        "# Benchmark report",
        "",
        f"This run: split `{summary['split']}` of `{summary.get('dataset')}`, degraded inputs from "
        f"`{summary.get('lq')}`; {n_text} images per task.",
        "",
        f"Rows marked **{THIS_RUN}** were measured here. Rows marked **{PAPER_SOURCE}** are the numbers "
        "printed in the paper (Li et al., TPAMI 2023) on its own CelebRef-HQ test set with its models; they "
        "are quoted for reference, not measured here, and a different test set gives different numbers.",
        "",
        "## Metric conventions",
        "",
    ]
    for key in ("psnr", "ssim", "lpips", "fid", "id"):
        if key in conv:
            extra = f" N = {', '.join(str(v) for v in n.values())}." if key == "fid" else ""
            lines.append(
                f"- **{labels.get(key, key)}** ({'↑' if _HIGHER[key] else '↓'}): {conv[key]}.{extra}"
            )
    if embedder != PAPER_ID_EMBEDDER:
        lines.append(
            f"- **{_id_label(embedder)} is not ArcFace.** The paper's Id is the cosine similarity of ArcFace "
            f"embeddings; this run's Id uses the {embedder} embedder, whose similarity scale differs, so "
            f"the two are shown in separate columns ({_id_label(embedder)} for this run, Id(ArcFace) for the "
            "paper) and must not be compared."
        )
    lines.append(f"- {NOT_REPORTED}: not reported by that source; n/a [k]: not available, reason in note k.")
    lines += ["", "## Methods in this run", ""]
    for name, entry in summary["methods"].items():
        checkpoint = checkpoint_text(entry)
        used = f"; checkpoint `{checkpoint}`" if checkpoint else ""
        if not entry.get("available", False):
            lines.append(
                f"- `{name}`: {entry.get('description', '')}{used} — unavailable: {entry.get('reason')}"
            )
            continue
        timing = ", ".join(
            f"{_TASK_LABEL.get(t, t)} {e['seconds'] / max(e['n'], 1):.3f} s/image restored and scored"
            for t, e in entry["tasks"].items()
        )
        lines.append(
            f"- `{name}`: {entry.get('description', '')}{used} ({timing}; results in `{entry['slug']}/`)"
        )
    for table in tables:
        lines += ["", f"## Table {table.number}: {table.title}", ""]
        lines += _markdown_table(table)
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"{i}. {text}" for i, text in enumerate(notes, 1)]
    if figures:
        lines += [
            "",
            "## Figures",
            "",
            "Columns: LQ input (nearest-neighbour enlargement), each method, ground truth. Rows: whole face, "
            "left and right eye, mouth (boxes from the ground-truth landmarks, marked on the ground truth).",
            "",
        ]
        for path in figures:
            lines += [f"![{path.stem}](figures/{path.name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_csv(tables: Sequence[ReportTable], notes: Sequence[str]) -> pd.DataFrame:
    """Long format: table, method, source, task, metric (column key), label, value, higher_is_better, n,
    text (as printed), note (the reason of an ``n/a``), checkpoint (the weights of this run's method)."""
    records = []
    for table in tables:
        for row in table.rows:
            for task, key in table.columns:
                cell = row.cells[(task, key)]
                records.append(
                    {
                        "table": table.number,
                        "method": row.method,
                        "source": row.source,
                        "task": task,
                        "metric": key,
                        "label": table.labels[key],
                        "value": cell.value,
                        "higher_is_better": table.higher_is_better[key],
                        "n": row.n.get(task),
                        "text": cell.text,
                        "note": notes[cell.note - 1] if cell.note else "",
                        "checkpoint": row.checkpoint or "",
                    }
                )
    frame = pd.DataFrame.from_records(records)
    frame["n"] = frame["n"].astype("Int64")
    return frame


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "†": r"\textsuperscript{\dag}",
    "×": r"$\times$",
    "—": "--",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(tables: Sequence[ReportTable], notes: Sequence[str]) -> str:
    """``benchmark.tex``: one booktabs ``table`` per report table, then the notes."""
    out = [
        "% Generated by python -m benchmark.report; needs \\usepackage{booktabs}.",
        f"% Rows with source '{_tex(PAPER_SOURCE)}' are quoted from the paper, not measured.",
    ]
    for table in tables:
        k = len(table.column_keys)
        spec = "ll" + ("r" * k) * len(table.tasks)
        out += [
            "",
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{Table {table.number}: {_tex(table.title)}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & & "
            + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_tex(_TASK_LABEL.get(t, t))}}}" for t in table.tasks)
            + r" \\",
            "".join(rf"\cmidrule(lr){{{3 + i * k}-{2 + (i + 1) * k}}}" for i in range(len(table.tasks))),
            "Method & Source & "
            + " & ".join(_tex(f"{table.labels[key]}{_arrow(table, key)}") for _, key in table.columns)
            + r" \\",
            r"\midrule",
        ]
        for row in table.rows:
            cells = []
            for column in table.columns:
                cell = row.cells[column]
                cells.append(_tex(cell.text) + (rf"\textsuperscript{{{cell.note}}}" if cell.note else ""))
            method = _tex(row.method) + (rf"\textsuperscript{{{row.note}}}" if row.note else "")
            out.append(" & ".join([method, _tex(row.source), *cells]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    if notes:
        out += ["", r"\noindent Notes:\\"]
        out += [rf"\textsuperscript{{{i}}} {_tex(text)}\\" for i, text in enumerate(notes, 1)]
    return "\n".join(out) + "\n"


def make_figures(
    summary: Mapping[str, Any], results_root: str | Path, out_dir: str | Path, config: FigureConfig
) -> list[Path]:
    """Draw the figures of :mod:`benchmark.figures` for the chosen images, one per task; returns the paths.

    Ground truth and landmarks come from ``summary['dataset']``, LQ inputs from ``summary['lq']``, the
    methods' outputs from ``<results_root>/<method>/<task>/``.

    Raises:
        FileNotFoundError: an image the figure needs is missing (e.g. results deleted after evaluation).
    """
    if config.images == 0 and not config.ids:
        return []
    dataset = CelebRefHQ(summary["dataset"], summary["split"], with_references=False)
    records = {f"{r.identity}/{r.index}": r for r in dataset.records}
    chosen = choose_images(list(records), config)
    available = [(name, e) for name, e in summary["methods"].items() if e.get("available", False)]
    paths = []
    for task in summary["tasks"]:
        for image_id in chosen:
            rec = records[image_id]
            rel = Path(rec.identity) / f"{rec.index}.png"
            lq = read_image(Path(summary["lq"]) / f"{summary['split']}_{task}" / rel)
            columns = [Column(f"LQ input ({task})", lq, nearest=True)]
            for name, entry in available:
                path = Path(results_root) / (entry.get("slug") or method_slug(name)) / task / rel
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{path} not found: the results of {name!r} ({task}) are missing; re-run evaluate"
                    )
                columns.append(Column(name, read_image(path)))
            columns.append(Column("ground truth", read_image(rec.image_path)))
            figure = compose_figure(columns, read_landmarks(rec.landmarks_path), tile=config.tile)
            path = Path(out_dir) / f"{task}_{rec.identity}_{rec.index}.png"
            save_figure(path, figure)
            paths.append(path)
    return paths


def run(
    config: ReportConfig, metrics_root: str | Path, results_root: str | Path | None, out_root: str | Path
) -> dict[str, Path]:
    """Write ``benchmark.md``, ``benchmark.csv``, ``benchmark.tex`` and ``figures/`` into ``out_root``.

    Args:
        config: the ``report`` section.
        metrics_root: folder holding ``summary.json`` and ``run.json``.
        results_root: the restored images (default: the folder recorded in the summary).
        out_root: the report folder (replaced whole, atomically).

    Returns:
        name → final path of each file written (figures as ``figures/<file>``).
    """
    summary = load_summary(metrics_root)
    results = Path(results_root) if results_root is not None else Path(summary["results"])
    tables, notes = build_tables(summary, config.tables)
    out_root = Path(out_root)
    written: dict[str, Path] = {}
    with atomic_dir(out_root) as tmp:
        figures = make_figures(summary, results, tmp / "figures", config.figures)
        (tmp / "benchmark.md").write_text(render_markdown(summary, tables, notes, figures), encoding="utf-8")
        render_csv(tables, notes).to_csv(tmp / "benchmark.csv", index=False)
        (tmp / "benchmark.tex").write_text(render_latex(tables, notes), encoding="utf-8")
        names = ["benchmark.md", "benchmark.csv", "benchmark.tex"] + [f"figures/{p.name}" for p in figures]
    for name in names:
        written[name] = out_root / name
    return written


def main(argv: list[str] | None = None) -> int:
    """The stage's CLI. Exit codes: 0 the report is written; 2 bad settings, arguments or inputs (no
    evaluation record), nothing written."""
    parser = ArgumentParser(prog="python -m benchmark.report", description="Write the benchmark report.")
    parser.add_argument(
        "--params", default="params.yaml", help="params file (its 'report' section, optional)"
    )
    parser.add_argument("--metrics", default="metrics", help="folder holding summary.json and run.json")
    parser.add_argument(
        "--results", default=None, help="restored images (default: as recorded in the summary)"
    )
    parser.add_argument("--out", default="reports", help="report folder (replaced whole)")
    args = parser.parse_args(argv)
    with bad_input_exits():  # everything the run would refuse at its start, before it writes
        try:
            config = load_stage_config(ReportConfig, "report", args.params)
        except MissingSectionError:
            config = ReportConfig()
        load_summary(args.metrics)
    written = run(config, args.metrics, args.results, args.out)
    n_fig = sum(1 for k in written if k.startswith("figures/"))
    print(f"report: {len(config.tables)} table(s), {n_fig} figure(s) -> {Path(args.out) / 'benchmark.md'}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
