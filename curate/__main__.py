"""``python -m curate --params params.yaml --raw data/raw --out data/celebref``.

Exit codes: 0 the dataset holds images; 1 it was written but kept no image (``rejected.parquet`` says why
each photo was dropped); 2 bad settings or inputs (no raw manifest, no downloaded photo), nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from celebref.cli import EXIT_FAILED, EXIT_OK, ArgumentParser, bad_input_exits, error
from celebref.config import ConfigError
from celebref.params import load_stage_config
from curate.build import read_raw_photos, run
from curate.config import CurateConfig
from curate.execute import Backend, check_backend

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m curate", description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/celebref"))
    args = parser.parse_args(argv)
    with bad_input_exits():  # everything the run would refuse, before it writes
        config = load_stage_config(CurateConfig, "curate", args.params)
        check_backend(Backend(config.backend, config.workers, config.ray_address))
        if not read_raw_photos(args.raw):
            raise ConfigError(f"{args.raw}: the raw manifest lists no successfully downloaded photo")
    manifest = run(config, args.raw, args.out)
    if manifest.empty:
        return error(f"curate kept no image: {args.out / 'rejected.parquet'} says why", EXIT_FAILED)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
