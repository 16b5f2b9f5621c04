"""What the experiment scripts share as commands: bad input is one line, not a traceback.

A ``UserError`` (a bad flag, a missing file) ends the script with ``error: <message>`` on
stderr and exit status 2, as the ``rnn-theano`` commands do.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from rnn_theano.errors import UserError

Main = Callable[[list[str] | None], int]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is a ``UserError`` instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def reports_user_errors(main: Main) -> Main:
    """``main(argv)``, with a ``UserError`` printed as one line and returned as status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapper
