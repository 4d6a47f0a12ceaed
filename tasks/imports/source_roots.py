"""Which files an import may read on the worker: anything it can read, or, when
`$BATCHFLOWS_SOURCE_ROOTS` is set (the jobs service always sets it), only files inside those
directories, symlinks and `..` resolved first."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.errors import InputError

SOURCE_ROOTS_ENV = "BATCHFLOWS_SOURCE_ROOTS"


def source_roots() -> list[Path]:
    """The allowed directories (`os.pathsep`-separated, resolved); empty means no limit."""
    raw = os.environ.get(SOURCE_ROOTS_ENV, "")
    return [Path(entry).resolve() for entry in raw.split(os.pathsep) if entry.strip()]


def check_source_root(path: Path) -> Path:
    """`path` if no roots are configured, else its resolved form if that lies inside a root.

    The check runs before the file is opened or even looked at, so a refusal says nothing
    about whether a file outside the roots exists.
    """
    roots = source_roots()
    if not roots:
        return path
    resolved = path.resolve()
    if any(resolved != root and resolved.is_relative_to(root) for root in roots):
        return resolved
    raise InputError(
        f"parameter 'source': {str(path)[:300]!r} is outside the directories imports may read "
        f"(${SOURCE_ROOTS_ENV}); put the file there"
    )
