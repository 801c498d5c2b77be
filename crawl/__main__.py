"""``python -m crawl --params params.yaml --out data/raw``: run the crawl stage.

Exit codes: 0 the crawl holds photos (a resumed run that adds none included); 1 it holds no photo at all
(every search or download failed); 2 bad settings or inputs, nothing written.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from celebref.cli import EXIT_FAILED, EXIT_OK, ArgumentParser, bad_input_exits, error
from celebref.params import load_stage_config
from crawl.config import CrawlConfig
from crawl.run import prepare, run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m crawl", description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    parser.add_argument("--section", default="crawl", help="section of the params file")
    parser.add_argument("--out", type=Path, default=Path("data/raw"), help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with bad_input_exits():
        config = load_stage_config(CrawlConfig, args.section, args.params)
        plan = prepare(config)
    summary = run(config, args.out, plan=plan)
    print(summary.line())
    why = summary.nothing_stored()
    return EXIT_OK if why is None else error(why, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
