"""``python -m degrade --params params.yaml --dataset data/celebref --split test --out data/lq``.

Exit codes: 0 the sets are written; 1 a set holds no image (every one failed, its table says why); 2 bad
settings, arguments or inputs (no such split, an empty one), nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from celebref.cli import EXIT_FAILED, EXIT_OK, ArgumentParser, bad_input_exits, error
from celebref.params import load_stage_config
from curate.dataset import CelebRefHQ
from degrade.config import DegradeConfig
from degrade.testset import TABLE_NAME, run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m degrade", description="Build the fixed degraded test sets.")
    parser.add_argument("--params", default="params.yaml", help="params file (its 'degrade' section)")
    parser.add_argument("--dataset", required=True, help="dataset root holding <split>/<identity>/<n>.png")
    parser.add_argument("--split", default="test", help="split to degrade (default: test)")
    parser.add_argument("--out", required=True, help="output root; sets go to <out>/<split>_<task>/")
    args = parser.parse_args(argv)
    with bad_input_exits():  # everything the run would refuse, before it writes
        config = load_stage_config(DegradeConfig, "degrade", args.params)
        if not CelebRefHQ(args.dataset, args.split, with_references=False).records:
            raise FileNotFoundError(
                f"no images in {Path(args.dataset) / args.split} (expected <identity>/<n>.png)"
            )
    outputs = run(config, args.dataset, args.out, split=args.split)
    empty = [str(folder) for folder in outputs.values() if not _written(folder)]
    if empty:
        return error(f"degrade wrote no image to {', '.join(empty)} ({TABLE_NAME} says why)", EXIT_FAILED)
    return EXIT_OK


def _written(folder: Path) -> int:
    """Images a built set holds (rows of its table with status ok)."""
    return int((pd.read_csv(folder / TABLE_NAME)["status"] == "ok").sum())


if __name__ == "__main__":
    sys.exit(main())
