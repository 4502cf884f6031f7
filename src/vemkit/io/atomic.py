"""Write outputs atomically: build at a temporary sibling path, then rename into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vemkit.errors import OutputExistsError, OutputNotWritableError

__all__ = ["atomic_output", "check_output_path", "remove_path"]


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Validate an output location before any work is done.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    OutputNotWritableError
        The parent folder is missing or cannot be written.
    """
    target = Path(path).expanduser().absolute()
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"output {str(target)!r} already exists; choose another path or pass --overwrite"
        )
    parent = target.parent
    if not parent.is_dir():
        raise OutputNotWritableError(
            f"cannot write {str(target)!r}: folder {str(parent)!r} does not exist"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            f"cannot write {str(target)!r}: no permission to write in {str(parent)!r}"
        )
    return target


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it to ``path`` only on success.

    If the body raises, the temporary output is removed and ``path`` is untouched, so
    nothing half-written is ever left behind. With ``overwrite`` an existing ``path`` is
    replaced only after the new output is complete.
    """
    target = check_output_path(path, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to {tmp}")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            remove_path(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise
