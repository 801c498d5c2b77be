"""``python -m curate --params params.yaml --raw data/raw --out data/celebref``."""

from __future__ import annotations

import argparse
from pathlib import Path

from celebref.config import load_section
from curate.build import run
from curate.config import CurateConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curate", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/celebref"))
    args = parser.parse_args(argv)
    run(load_section(CurateConfig, "curate", args.params), args.raw, args.out)


if __name__ == "__main__":
    main()
