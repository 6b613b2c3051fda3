"""One training run per work dir: an OS lock, released however its holder ends."""
import gc
import os
import signal
import socket
import subprocess
import sys

import pytest

from cascade_clip.apis.work_dir import LOCK_NAME, WorkDirLockedError, lock_work_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = ('import sys, time; from cascade_clip.apis.work_dir import lock_work_dir; '
        'lock = lock_work_dir(sys.argv[1]); print("locked", flush=True); time.sleep(120)')


def hold_lock(work_dir):
    """Another process holding the lock of ``work_dir`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, '-c', HOLD, str(work_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.readline().strip() == 'locked'
    return proc


def test_second_lock_is_refused_naming_the_first_process_and_released_when_it_is_killed(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(WorkDirLockedError, match=rf'work dir {tmp_path} is in use by another '
                           rf'training run \(process {holder.pid} on host {socket.gethostname()};'):
            lock_work_dir(str(tmp_path))
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up of any kind runs
        holder.wait()
    # the lock file of the dead process is still there, and does not block
    assert f'process {holder.pid}' in (tmp_path / LOCK_NAME).read_text()
    lock = lock_work_dir(str(tmp_path))
    assert (tmp_path / LOCK_NAME).read_text() == f'process {os.getpid()} on host {socket.gethostname()}\n'
    lock.release()


def test_release_lets_the_next_run_lock(tmp_path):
    first = lock_work_dir(str(tmp_path))
    with pytest.raises(WorkDirLockedError, match=f'process {os.getpid()} '):
        lock_work_dir(str(tmp_path))  # two locks in one process conflict too (one per run)
    first.release()
    lock_work_dir(str(tmp_path)).release()
    del first
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]


def test_a_link_planted_as_the_lock_file_is_refused_and_its_target_kept(tmp_path):
    target = tmp_path / 'notes.txt'
    target.write_text('keep me')
    work = tmp_path / 'work'
    work.mkdir()
    os.symlink(target, work / LOCK_NAME)
    with pytest.raises(OSError, match=rf'^{work}/{LOCK_NAME} is a symbolic link \(to {target}\): '
                       r'refused, its target is not written; remove the link$'):
        lock_work_dir(str(work))
    assert target.read_text() == 'keep me'
    # a hard link to the file: the same, named
    os.remove(work / LOCK_NAME)
    os.link(target, work / LOCK_NAME)
    with pytest.raises(OSError, match=rf'^{work}/{LOCK_NAME} is not a plain file of its own \(a hard '
                       r'link\): refused'):
        lock_work_dir(str(work))
    assert target.read_text() == 'keep me'


def test_an_unwritable_work_dir_is_named_and_nothing_is_raised_afterwards(tmp_path, monkeypatch):
    """(Tests may run as root, for whom a read-only folder is writable: os.open is made to fail
    as it does for other users.)"""
    def read_only(path, flags, mode=0o777):
        raise PermissionError(13, 'Permission denied', path)

    unraisable = []
    monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
    monkeypatch.setattr(os, 'open', read_only)
    with pytest.raises(PermissionError, match=rf'^\[Errno 13\] cannot open the lock file '
                       rf'{tmp_path}/{LOCK_NAME}: Permission denied \(the work dir {tmp_path} must '
                       r'be writable\)$'):
        lock_work_dir(str(tmp_path))
    gc.collect()  # the half-built lock object is collected: its __del__ raises nothing
    assert unraisable == []
