"""One training run per work dir: an exclusive ``flock`` on ``<work_dir>/.train.lock`` held for
the whole run (the kernel releases it however the process ends); the file names the owner."""
import errno
import fcntl
import os
import os.path as osp
import socket
import stat
from typing import Optional

LOCK_NAME = '.train.lock'


class WorkDirLockedError(RuntimeError):
    """Another live process holds the work dir's lock."""


class WorkDirLock:
    """The held lock of one work dir (released by :meth:`release`, when garbage-collected, or
    when the process exits)."""

    def __init__(self, work_dir: str):
        self._fd: Optional[int] = None  # set first: __del__ runs even when __init__ fails
        self.path = osp.join(work_dir, LOCK_NAME)
        try:
            # O_CREAT without O_TRUNC: the owner's pid in an existing file stays readable until
            # the lock is ours; O_NOFOLLOW: a link planted there is not followed to its target
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                               0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OSError(f'{self.path} is a symbolic link (to {os.readlink(self.path)}): '
                              f'refused, its target is not written; remove the link') from None
            hint = (f' (the work dir {work_dir} must be writable)'
                    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else '')
            raise OSError(e.errno, f'cannot open the lock file {self.path}: {e.strerror}{hint}') from None
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            self.release()
            raise OSError(f'{self.path} is not a plain file of its own (a '
                          f'{"hard link" if stat.S_ISREG(st.st_mode) else "special file"}): '
                          f'refused, it is not written; remove it')
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
    """Lock ``work_dir`` (it must exist) for this process (keep the object for the whole run), or
    raise :class:`WorkDirLockedError` naming the run that holds it."""
    return WorkDirLock(work_dir)
