"""``python -m crawl --params params.yaml --out data/raw``: run the crawl stage."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from celebref.config import load_section
from crawl.config import CrawlConfig
from crawl.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawl", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    parser.add_argument("--section", default="crawl", help="section of the params file")
    parser.add_argument("--out", type=Path, default=Path("data/raw"), help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_section(CrawlConfig, args.section, args.params)
    summary = run(config, args.out)
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
