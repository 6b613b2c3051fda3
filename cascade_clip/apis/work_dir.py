"""One training run per work dir: an OS lock held for the whole run.

Two runs writing into one work dir overwrite each other's checkpoints and interleave one log.
The run takes an exclusive ``flock`` on ``<work_dir>/.train.lock`` before it writes anything
there; the kernel releases it when the process ends, however it ends (exception, SIGTERM,
kill -9), so a lock file left by a finished or dead run never blocks the next one. The file
holds the owner's process id and host, for the message of a refused second run.
"""
import fcntl
import os
import os.path as osp
import socket
from typing import Optional

LOCK_NAME = '.train.lock'


class WorkDirLockedError(RuntimeError):
    """Another live process holds the work dir's lock."""


class WorkDirLock:
    """The held lock of one work dir (released by :meth:`release`, when garbage-collected, or
    when the process exits)."""

    def __init__(self, work_dir: str):
        self.path = osp.join(work_dir, LOCK_NAME)
        # O_CREAT without O_TRUNC: the owner's pid in an existing file stays readable until
        # the lock is ours
        self._fd: Optional[int] = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self._fd, 4096, 0).decode(errors='replace').strip() or 'unknown'
            self.release()
            raise WorkDirLockedError(
                f'work dir {work_dir} is in use by another training run ({owner}; lock file '
                f'{self.path}): refused before writing anything there. Wait for that run to '
                f'end, or choose another --work-dir') from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f'process {os.getpid()} on host {socket.gethostname()}\n'.encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __del__(self):
        self.release()


def lock_work_dir(work_dir: str) -> WorkDirLock:
    """Lock ``work_dir`` (it must exist) for this process, or raise :class:`WorkDirLockedError`
    naming the process id and host of the run that holds it. Keep the returned object for the
    whole run."""
    return WorkDirLock(work_dir)
