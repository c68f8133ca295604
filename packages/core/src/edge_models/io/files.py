"""Every output is written to a temporary file beside it and renamed into place, so a failure
(or a check that rejects the result) never leaves a half-written file under the real name.

A write the system refuses (a full disk, a read-only or protected folder, a directory in the way) becomes one
`WriteError` naming the path and the cause, which the CLI prints as one line."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

# Causes a user can act on, by errno; other OSErrors (a bug, a failing read) keep their traceback.
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a parent of it is not a directory",
}


class WriteError(Exception):
    """An output could not be written; the message names the path, the cause and, for a full disk, the space."""


def describe_write_error(path: Path, error: OSError, written: int = 0, size_hint: int | None = None) -> str:
    cause = _CAUSES[error.errno]
    message = f"cannot write {path}: {cause}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
        free = shutil.disk_usage(folder).free
        need = f"about {_mb(size_hint)} needed" if size_hint else f"more than the {_mb(written)} written"
        message += f" ({need}, {_mb(free)} free in {folder}); nothing was left behind"
    return message


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@contextlib.contextmanager
def write_errors_named(path: str | os.PathLike[str], size_hint: int | None = None) -> Iterator[None]:
    """Inside the block, an OSError a user can act on becomes a `WriteError` about `path`."""
    try:
        yield
    except OSError as e:
        if e.errno not in _CAUSES:
            raise
        raise WriteError(describe_write_error(Path(path), e, size_hint=size_hint)) from None


def write_atomically(
    output: str | os.PathLike[str],
    write: Callable[[BinaryIO], None],
    check: Callable[[Path], None] | None = None,
    size_hint: int | None = None,
) -> Path:
    """`write(f)` fills the temporary file; `check(path)` may inspect it and raise before the rename.
    `size_hint`: the expected size in bytes, named when the disk fills."""
    output = Path(output)
    if output.is_dir():
        raise WriteError(f"cannot write {output}: it is a directory; give a file name")
    tmp: str | None = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; outputs are meant to be shared like any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, output)
    except OSError as e:
        written = _size(tmp)
        _remove(tmp)
        if e.errno not in _CAUSES:
            raise
        raise WriteError(describe_write_error(output, e, written, size_hint)) from None
    except BaseException:
        _remove(tmp)
        raise
    return output


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


def _remove(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
