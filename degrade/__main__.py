"""``python -m degrade --params params.yaml --dataset data/celebref --split test --out data/lq``."""

from __future__ import annotations

import argparse

from celebref.config import load_section
from degrade.config import DegradeConfig
from degrade.testset import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m degrade", description="Build the fixed degraded test sets."
    )
    parser.add_argument("--params", default="params.yaml", help="params file (its 'degrade' section)")
    parser.add_argument("--dataset", required=True, help="dataset root holding <split>/<identity>/<n>.png")
    parser.add_argument("--split", default="test", help="split to degrade (default: test)")
    parser.add_argument("--out", required=True, help="output root; sets go to <out>/<split>_<task>/")
    args = parser.parse_args(argv)
    config = load_section(DegradeConfig, "degrade", args.params)
    run(config, args.dataset, args.out, split=args.split)


if __name__ == "__main__":
    main()
