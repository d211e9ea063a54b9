"""User errors: a bad file or option. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A problem with what the user handed us (a file, an option), not a bug in dancegen."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):  # keeps (path, problem) when raised in a worker process
        return type(self), (self.path, self.problem)


def require_file(path: str | os.PathLike) -> Path:
    """Return `path` as a Path if it is a non-empty regular file, else raise UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError(p, "no such file")
    if not p.is_file():
        raise UserError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise UserError(p, "file is empty")
    return p
