"""Atomic file writes: a reader (or a crash) never sees half a file, and the old one survives.

The content goes to a temporary file in the target's directory, is flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import UserError


def atomic_write(path: str | Path, write: Callable[[IO], None], *, text: bool = False) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically.

    A path that cannot be written is a ``UserError``; the previous file is then untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}): choose another path") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new file normally gets this
        with (os.fdopen(fd, "w", encoding="utf-8", newline="\n") if text
              else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except IsADirectoryError:
        raise UserError(f"cannot write {path}: it is a folder; choose another path") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1) + "\n"), text=True)
