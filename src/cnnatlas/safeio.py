"""Reading files someone else may have prepared, and writing files others can rely on.

Every reader of a user-supplied or run-folder file goes through :func:`read_regular_file` (or
:func:`open_regular` for streaming), which

* opens with ``O_NONBLOCK``, so a FIFO (named pipe) fails at once instead of blocking forever,
* refuses anything but a regular file (folders, FIFOs, sockets, ``/dev/zero`` and other devices),
* optionally refuses a symlink (``O_NOFOLLOW``: run files must be the folder's own files),
* checks the size from ``fstat`` against a limit *before* reading a byte, and reads from the
  very descriptor it checked (no race between the check and the read).

Writers go through :func:`atomic_writer`: a temporary file in the same folder, created with the
user's umask (mode 0666 & ~umask, like any other tool), flushed, fsynced and renamed into place,
then the folder fsynced, so readers see either the old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from cnnatlas.errors import CnnAtlasError, DataError, InputError

#: Prefix of every temporary file cnnatlas writes (``.tmp-<final name>.<random>``).
TMP_PREFIX = ".tmp-"


def describe_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def open_regular(
    path: str | os.PathLike[str],
    *,
    what: str = "file",
    max_bytes: int | None = None,
    follow_symlinks: bool = True,
    error: type[CnnAtlasError] = DataError,
) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes``; ``(handle, size)``.

    Every refusal is one ``error`` naming the file and the reason.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {str(path)!r} is a folder, not a file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise error(f"{what} {str(path)!r} is a symbolic link; only the folder's own files are read") from None
        raise error(f"{what} {str(path)!r} cannot be opened ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {str(path)!r} is {describe_kind(info.st_mode)}, not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(
                f"{what} {str(path)!r} is {human_bytes(info.st_size)}, more than the {human_bytes(max_bytes)} "
                "such a file can be"
            )
        # The descriptor was opened non-blocking only to get past a FIFO; regular files ignore it.
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return handle, int(info.st_size)


def read_regular_file(
    path: str | os.PathLike[str],
    *,
    what: str = "file",
    max_bytes: int,
    follow_symlinks: bool = True,
    error: type[CnnAtlasError] = DataError,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`)."""
    handle, size = open_regular(path, what=what, max_bytes=max_bytes, follow_symlinks=follow_symlinks, error=error)
    with handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # grew while we read it
        raise error(f"{what} {str(path)!r} is larger than the {human_bytes(max_bytes)} such a file can be")
    return data


# -- writing --------------------------------------------------------------------------------
def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where the OS cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_write_error(path: str | os.PathLike[str], exc: OSError) -> str:
    """One sentence for a failed write (full disk, read-only folder, name too long, ...)."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file size limit was reached",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "the operation is not permitted (an immutable or protected folder?)",
        errno.ENAMETOOLONG: "the name is too long",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "a folder is in the way",
        errno.ENOENT: "the folder does not exist",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot write {str(path)!r}: {reason}"


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file that is renamed into place only when complete.

    The temporary file is created with mode 0666 filtered by the umask, as ``open()`` would.
    A failure (``OSError`` included: full disk, file size limit) removes the temporary file,
    leaves any previous ``path`` untouched and is raised as an :class:`InputError` naming the
    file and the reason.
    """
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise InputError(describe_write_error(path, exc)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(describe_write_error(path, exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    with atomic_writer(path) as handle:
        handle.write(data)
