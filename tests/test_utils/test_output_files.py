"""Text read as UTF-8 without a byte-order mark; outputs written whole, under names of their own;
evaluation results read back only when whole and reused only for the same inputs."""
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time

import mmcv
import numpy as np
import pytest
from mmcv.fileio.file_client import HardDiskBackend

from cascade_clip.utils import results
from cascade_clip.utils.files import atomic_output, write_image


def test_atomic_output_without_replace_keeps_the_existing_file(tmp_path):
    path = tmp_path / 'eval.json'
    path.write_text('the other run')
    with pytest.raises(FileExistsError, match=rf'could not write {path}: File exists'):
        with atomic_output(str(path), replace=False) as tmp:
            with open(tmp, 'w') as f:
                f.write('this run')
    assert path.read_text() == 'the other run' and os.listdir(tmp_path) == ['eval.json']
    new = tmp_path / 'new.json'
    with atomic_output(str(new), replace=False) as tmp:
        with open(tmp, 'w') as f:
            f.write('this run')
    assert new.read_text() == 'this run' and sorted(os.listdir(tmp_path)) == ['eval.json', 'new.json']


def half_then_full(monkeypatch, fail_at):
    """The disk fills during the ``fail_at``-th write through MMCV's file backend (1-based):
    half of it is written, then ENOSPC."""
    calls = []
    real = HardDiskBackend.put

    def put(self, obj, filepath):
        calls.append(filepath)
        if len(calls) == fail_at:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(self, obj, filepath)

    monkeypatch.setattr(HardDiskBackend, 'put', put)
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10, 9, 2**20))
    return calls


def test_write_image_on_a_full_disk_names_the_file_and_leaves_no_part(tmp_path, monkeypatch):
    half_then_full(monkeypatch, fail_at=2)
    img = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    write_image(img, str(tmp_path / 'a.png'))
    with pytest.raises(OSError) as e:
        write_image(img, str(tmp_path / 'b.png'))
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == (f'[Errno 28] could not write {tmp_path}/b.png: no space left on the '
                            f'device (1.0 MiB free there)')
    assert os.listdir(tmp_path) == ['a.png']
    assert np.array_equal(mmcv.imread(str(tmp_path / 'a.png')), img)


def test_file_sha256_is_the_contents_and_follows_changes(tmp_path):
    path = tmp_path / 'latest.pth'
    path.write_bytes(b'x' * (3 * 2**20 + 5))  # more than one chunk
    assert results.file_sha256(str(path)) == hashlib.sha256(b'x' * (3 * 2**20 + 5)).hexdigest()
    stat = path.stat()
    path.write_bytes(b'y' * (3 * 2**20 + 5))  # same size; a newer modification time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert results.file_sha256(str(path)) == hashlib.sha256(b'y' * (3 * 2**20 + 5)).hexdigest()


def write_in_the_same_second(work_dir, queue):
    """Another process's tools/test.py, ending in the same second as this one's."""
    time.strftime = lambda fmt, *a: '20240101_120000'
    path = results.eval_json_path(work_dir)
    results.write_eval_json(path, dict(metric=dict(mIoU=os.getpid() / 1e7)))
    queue.put((path, os.getpid()))


def test_two_runs_in_the_same_second_keep_both_results(tmp_path):
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    procs = [ctx.Process(target=write_in_the_same_second, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    written = sorted(queue.get(timeout=5) for _ in procs)
    assert sorted(os.listdir(tmp_path)) == [f'eval_20240101_120000_{pid}.json' for _, pid in written]
    for path, pid in written:
        assert json.load(open(path))['metric'] == dict(mIoU=pid / 1e7)


def test_unreadable_eval_jsons_are_skipped_with_a_warning(tmp_path, caplog):
    good = dict(result_key='k1', metric=dict(mIoU=0.5))
    (tmp_path / 'eval_20240101_000000_1.json').write_text(json.dumps(good))
    (tmp_path / 'eval_20240101_000001_1.json').write_text(json.dumps(dict(result_key='k2', metric=dict(mIoU=0.7))))
    (tmp_path / 'eval_20240101_000002_1.json').write_text('')  # empty: a run cut off
    (tmp_path / 'eval_20240101_000003_1.json').write_text('{"config": ')  # cut short
    (tmp_path / 'eval_20240101_000004_1.json').write_text('[1, 2]')
    logger = logging.getLogger('test_results')
    with caplog.at_level(logging.WARNING, logger='test_results'):
        assert results.newest_eval(str(tmp_path), logger=logger)['metric'] == dict(mIoU=0.7)
        assert results.newest_eval(str(tmp_path), 'k1', logger)['metric'] == dict(mIoU=0.5)
        assert results.newest_eval(str(tmp_path), 'k3', logger) is None
    warned = '\n'.join(r.getMessage() for r in caplog.records)
    for n, why in ((2, 'Expecting value: line 1 column 1'), (3, 'Expecting value: line 1 column 12'),
                   (4, 'no "metric" dict')):
        assert (f'skipped {tmp_path}/eval_20240101_00000{n}_1.json: not a readable evaluation result '
                f'({why}') in warned
