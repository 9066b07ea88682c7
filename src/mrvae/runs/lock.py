"""One writer per run folder: an OS-level lock (``fcntl.flock``) on ``RUN/.lock``, held for the run's lifetime.

The kernel releases a ``flock`` when its process ends, however it ends (SIGKILL included), so a lock can
never be left stale. The lock file holds the holder's pid, which a second process names in its error.
The file stays in the folder, except when a failed start removes what it made: a process that locked the file
just as it was removed notices (the path no longer leads to the file it locked) and locks the new one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class RunFolderBusy(ValueError):
    """Another live process holds the run folder's lock; the message names its pid."""


class RunLock:
    """``with RunLock(folder): ...`` holds an exclusive lock on ``folder/.lock`` (the folder must exist).

    ``acquire`` raises ``RunFolderBusy`` at once (no waiting) when another process holds it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise RunFolderBusy(f"run folder {self.path.parent} is in use by {who} (lock {self.path}); "
                                    f"wait for it to finish or stop it, or choose another --out") from None
            if _is_file_at(fd, self.path):
                break
            # the holder removed the file (a failed start cleaning up) between our open and our lock: a
            # lock on that orphan would exclude no one, so lock the file now at the path instead
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path`` (not removed or replaced since it was opened)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (at_path.st_dev, at_path.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
