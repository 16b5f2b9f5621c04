"""The exceptions that reach the user as a message instead of a traceback, and the two pieces
every command (``rnn-theano``, the experiment scripts) uses to deliver them that way."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

Main = Callable[[list[str] | None], int]


class UserError(Exception):
    """A problem with the user's input or files.

    The command-line entry points print ``error: <message>`` on one line to stderr and exit
    with status 2. The message names the problem and the fix.
    """


class SettingError(UserError, ValueError):
    """A setting with an impossible value, named by its field (``hidden_dim``).

    The library words the rule once; the command line shows it under the flag's name
    (``--hidden-dim``).
    """

    def __init__(self, setting: str, problem: str, others: tuple[str, ...] = ()) -> None:
        """``problem`` may name ``others``, further settings, as ``{others}``."""
        self.setting, self.problem, self.others = setting, problem, others
        super().__init__(f"{setting} {problem.format(others=', '.join(others))}")

    def as_flag(self) -> str:
        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")
        others = ", ".join(map(flag, self.others))
        return f"{flag(self.setting)} {self.problem.format(others=others)}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is a one-line ``UserError`` instead of usage text and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def user_errors(main: Main) -> Main:
    """``main(argv)``, with a ``UserError`` printed as ``error: ...`` (a ``SettingError`` under
    its flag's name) and returned as exit status 2."""
    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except SettingError as e:
            print(f"error: {e.as_flag()}", file=sys.stderr)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
        except KeyboardInterrupt:  # outside the training loop, which handles its own
            print("interrupted", file=sys.stderr)
            return 130
        from .backends import leave
        leave(2)  # a process of a run over several ends at once (see there)
        return 2
    return wrapper
