"""One writer per run folder: an exclusive ``fcntl.flock`` on ``RUN_DIR/.cnnatlas.lock``.

Training, resuming (and any other command that writes into a run folder) holds the lock for
as long as it writes. The kernel releases it when the process ends, however it ends (SIGKILL
included), so a lock is never left stale. A second writer fails at once with one error naming
the pid of the holder. Readers (``evaluate``, ``predict``, plots) take no lock: every file is
replaced atomically, so they always see complete files.

The lock file is never deleted (deleting a lock file lets two processes lock two different
files of the same name); it holds the pid of the last holder, for the error message only.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from cnnatlas.errors import InputError
from cnnatlas.safeio import describe_write_error

LOCK_FILE = ".cnnatlas.lock"


class RunLock:
    """An exclusive lock on a run folder; release with :meth:`release` or use as a context manager."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _holder_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return "unknown"
    return text[1] if len(text) >= 2 and text[0] == "pid" and text[1].isdigit() else "unknown"


def lock_run_dir(run_dir: str | os.PathLike[str]) -> RunLock:
    """Take the exclusive write lock of ``run_dir`` (which must exist), or raise InputError naming the holder."""
    import fcntl

    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise InputError(describe_write_error(path, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(fd)
        os.close(fd)
        raise InputError(
            f"{str(run_dir)!r} is in use by another cnnatlas process (pid {pid}); "
            "wait for it to finish or stop it, then try again"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise InputError(f"cannot lock {str(path)!r}: {exc.strerror or exc}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is only for the message; the lock itself is held
    return RunLock(run_dir, fd)
