"""Ctrl-C that stops training between two steps, never inside compiled code.

A KeyboardInterrupt raised while Numba-compiled code runs surfaces as a chain of
``SystemError``s, not as a clean interrupt. So during training SIGINT only raises a flag; the
loops check it after each step and stop through their normal Ctrl-C path (save, then exit).
A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
from types import FrameType


class StopFlag:
    """``with StopFlag() as stop:`` ... ``stop.check()`` between steps."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> StopFlag:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` here, at a safe point, if Ctrl-C was pressed."""
        if self.requested:
            raise KeyboardInterrupt
