"""A run stopped by SIGTERM (torchrun stopping the other processes when one fails, SLURM,
``timeout``) while it writes a checkpoint: no temporary file is left behind, the previous
checkpoint is kept, and the process exits with 143."""
import os
import os.path as osp
import re
import signal
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# A process that writes a checkpoint slowly: the patched writer leaves a partial temporary
# file, says so, then blocks until it is signalled.
WRITER = r'''
import sys, time
import torch.nn as nn
from cascade_clip.apis import exit_on_sigterm
from cascade_clip.core import runner

if sys.argv[2] == 'handler':
    assert exit_on_sigterm()

def slow_save(model, filename, optimizer=None, meta=None):
    with open(filename, 'wb') as f:
        f.write(b'half a checkpoint')
    print('writing', flush=True)
    time.sleep(120)

runner.save_checkpoint = slow_save
runner.atomic_save_checkpoint(nn.Linear(2, 2), sys.argv[1])
'''


def stop_while_writing(folder, mode):
    path = str(folder / 'iter_2.pth')
    proc = subprocess.Popen([sys.executable, '-c', WRITER, path, mode], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS='ignore'),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == 'writing\n', proc.stderr.read()
        written = sorted(os.listdir(folder))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return written, proc.returncode, err


@pytest.mark.parametrize('mode', ['handler', 'default'])
def test_sigterm_during_a_checkpoint_write(tmp_path, mode):
    (tmp_path / 'iter_1.pth').write_bytes(b'the previous checkpoint')
    written, returncode, err = stop_while_writing(tmp_path, mode)
    assert len(written) == 2 and written[1] == 'iter_1.pth'
    assert re.fullmatch(r'\.iter_2\.tmp-\d+\.pth', written[0])  # the hidden temporary file
    left = sorted(os.listdir(tmp_path))
    if mode == 'handler':
        assert returncode == 128 + signal.SIGTERM, err
        assert 'SIGTERM received, stopping' in err
        assert left == ['iter_1.pth']  # the temporary file is removed, nothing else changed
    else:
        # Python's default action: the process ends on the spot and the temporary file stays
        # (what the handler is for)
        assert returncode == -signal.SIGTERM
        assert left == written
    assert (tmp_path / 'iter_1.pth').read_bytes() == b'the previous checkpoint'


def test_a_handler_of_the_user_is_kept():
    code = ('import signal\n'
            'from cascade_clip.apis import exit_on_sigterm\n'
            'mine = lambda s, f: None\n'
            'signal.signal(signal.SIGTERM, mine)\n'
            'assert exit_on_sigterm() is False\n'
            'assert signal.getsignal(signal.SIGTERM) is mine\n'
            'signal.signal(signal.SIGTERM, signal.SIG_DFL)\n'
            'assert exit_on_sigterm() is True\n'
            'assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS='ignore'),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
