"""A full disk while saving a checkpoint: the error names the file and the space left, the
temporary file is removed and the previous checkpoint is kept."""
import errno
import os
import shutil

import pytest
import torch.nn as nn

from cascade_clip.core import runner as runner_module
from cascade_clip.core.runner import atomic_save_checkpoint


@pytest.mark.parametrize('error', [
    OSError(errno.ENOSPC, 'No space left on device'),
    # torch's zip writer reports the same as a RuntimeError
    RuntimeError('[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0: '
                 'No space left on device'),
])
def test_full_disk_names_the_file_and_the_free_space(tmp_path, monkeypatch, error):
    path = str(tmp_path / 'iter_4.pth')
    with open(path, 'wb') as f:
        f.write(b'the previous checkpoint')

    def full_disk(model, filename, optimizer=None, meta=None):
        with open(filename, 'wb') as f:
            f.write(b'half a checkpoint')
        raise error

    monkeypatch.setattr(runner_module, 'save_checkpoint', full_disk)
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10, 9, 3 * 2**20))
    with pytest.raises(OSError) as e:
        atomic_save_checkpoint(nn.Linear(2, 2), path)
    assert e.value.errno == errno.ENOSPC
    assert f'could not write {path}: no space left on the device (3.0 MiB free there)' in str(e.value)
    assert os.listdir(tmp_path) == ['iter_4.pth']  # the temporary file is gone
    assert open(path, 'rb').read() == b'the previous checkpoint'


def test_other_errors_pass_unchanged(tmp_path, monkeypatch):
    def broken(model, filename, optimizer=None, meta=None):
        raise RuntimeError('something else')

    monkeypatch.setattr(runner_module, 'save_checkpoint', broken)
    with pytest.raises(RuntimeError, match='^something else$'):
        atomic_save_checkpoint(nn.Linear(2, 2), str(tmp_path / 'x.pth'))
    assert os.listdir(tmp_path) == []
