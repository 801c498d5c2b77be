"""What the project's ``python -m`` entry points share: one-line errors and the exit codes.

Exit codes: :data:`EXIT_OK` (0) success; :data:`EXIT_FAILED` (1) a run that failed or produced nothing it
was asked for (an unexpected exception's traceback exits 1 too); :data:`EXIT_BAD_INPUT` (2) bad
configuration, arguments or inputs, found before anything was written. Errors are one line on stderr,
``error: <message>``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

from pydantic import ValidationError

from celebref.config import describe_validation_error

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "ArgumentParser", "error", "bad_input_exits"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def error(message: object, code: int = EXIT_FAILED) -> int:
    """Print ``error: <message>`` as one line on stderr; return ``code`` for the caller to exit with."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose argument errors are one line ``error: …`` (exit 2), like the other errors."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(error(f"{message} (see {self.prog} --help)", EXIT_BAD_INPUT))


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    if isinstance(exc, KeyError) and type(exc) is KeyError and exc.args:
        return str(exc.args[0])  # not KeyError's quoted repr
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def bad_input_exits() -> Iterator[None]:
    """Around an entry point's checks (which write nothing): a bad configuration, argument or input ends
    the process with one line ``error: …`` on stderr and exit code 2.

    Caught: :class:`~celebref.config.ConfigError` and the other :class:`ValueError` (pydantic's errors
    included), :class:`OSError` (a missing file or folder), :class:`KeyError` and :class:`ImportError` (an
    optional dependency the settings need). Keep the block to the checks: an error of the run itself
    should show its traceback.
    """
    try:
        yield
    except (ValueError, OSError, KeyError, ImportError) as exc:
        raise SystemExit(error(_message(exc), EXIT_BAD_INPUT)) from None
