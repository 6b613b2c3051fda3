"""tools/train.py and tools/test.py: config sections checked before any work, one training run
per work dir, overlays and result files inside the folders asked for, under their relative names."""
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys
import time

import mmcv
import numpy as np
import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint
from mmseg.models import build_segmentor

import cascade_clip  # noqa: F401
from cascade_clip.apis.work_dir import LOCK_NAME, WorkDirLockedError, lock_work_dir

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')
PY = sys.executable


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """Synthetic data (and a copy of two validation images as nested/img/{a,b}/x.jpg), a tiny
    CLIP, embeddings and a checkpoint of the demo model."""
    from tools.demo_data import synthetic
    from tools.demo_data.tiny_clip import save_tiny_clip
    root = str(tmp_path_factory.mktemp('demo'))
    synthetic.make_dataset(root, num_train=8, num_val=2)
    np.save(osp.join(root, 'text_embeddings.npy'), synthetic.text_embeddings(32))
    save_tiny_clip(osp.join(root, 'tiny_clip.pt'), embed_dim=32, image_resolution=64,
                   vision_patch_size=8, vision_width=64, vision_layers=12, vision_heads=4)
    for sub, i in (('a', 0), ('b', 1)):
        for kind, ext in (('images', 'jpg'), ('annotations', 'png')):
            dst = osp.join(root, 'nested', kind, sub, f'x.{ext}')
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copy(osp.join(root, kind, 'val', f'val_{i:04d}.{ext}'), dst)
    cfg = Config.fromfile(CONFIG)
    cfg.model.pretrained = osp.join(root, 'tiny_clip.pt')
    cfg.model.load_text_embedding = osp.join(root, 'text_embeddings.npy')
    cfg.model.class_names = synthetic.class_names()
    torch.manual_seed(0)
    model = build_segmentor(cfg.model)
    model.init_weights()
    ckpt = osp.join(root, 'model.pth')
    save_checkpoint(model, ckpt, meta=dict(CLASSES=synthetic.class_names()))
    return root, ckpt


def options(root, *extra):
    opts = [f'model.pretrained={root}/tiny_clip.pt', f'model.load_text_embedding={root}/text_embeddings.npy',
            'runner.max_iters=2', 'checkpoint_config.interval=2', 'evaluation.interval=2',
            'log_config.interval=1', 'data.samples_per_gpu=2', 'lr_config.warmup_iters=1']
    opts += [f'data.{s}.data_root={root}' for s in ('train', 'val', 'test')]
    return ['--cfg-options', *opts, *extra]


def run(*args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}')
    return proc


def test_misspelt_checkpoint_config_fails_train_before_anything_is_written(demo, tmp_path):
    root, _ = demo
    work = tmp_path / 'work'
    r = run('tools/train.py', CONFIG, '--work-dir', str(work),
            *options(root, 'checkpoint_config.intervl=1'), check=False)
    assert r.returncode != 0
    assert (f"config {CONFIG}:\n  checkpoint_config: unknown key 'intervl' (did you mean "
            f"'interval'?)") in r.stderr
    assert 'Iter [' not in r.stdout + r.stderr
    assert not work.exists()  # no work dir, config dump or log


def test_misspelt_test_cfg_fails_test(demo, tmp_path):
    root, ckpt = demo
    r = run('tools/test.py', CONFIG, ckpt, '--eval', 'mIoU', '--work-dir', str(tmp_path / 'w'),
            *options(root, 'model.test_cfg.crop_szie=(64,64)'), check=False)
    assert r.returncode != 0
    assert "model.test_cfg: unknown key 'crop_szie' (did you mean 'crop_size'?)" in r.stderr
    assert not (tmp_path / 'w').exists()


def test_second_training_into_a_locked_work_dir_writes_nothing(demo, tmp_path):
    root, _ = demo
    work = tmp_path / 'work'
    cmd = [PY, 'tools/train.py', CONFIG, '--work-dir', str(work), '--no-validate',
           *options(root, 'runner.max_iters=100000', 'checkpoint_config.interval=100000')]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = work / LOCK_NAME
        deadline = time.time() + 120
        while not (lock.exists() and f'process {first.pid} ' in lock.read_text()):
            assert first.poll() is None and time.time() < deadline, 'the first run never locked'
            time.sleep(0.1)
        # the first run holds its lock: another process is refused, naming it
        with pytest.raises(WorkDirLockedError, match=f'process {first.pid} on host {socket.gethostname()}'):
            lock_work_dir(str(work))
        while not list(work.glob('*.log.json')):  # the first run has written all it writes at its start
            assert first.poll() is None and time.time() < deadline, 'the first run never started training'
            time.sleep(0.1)
        dump = work / osp.basename(CONFIG)  # written once, when the first run started
        before, dumped = sorted(p.name for p in work.iterdir()), dump.stat().st_mtime_ns
        r = run(*cmd[1:], check=False)
        assert r.returncode != 0 and first.poll() is None
        assert (f'work dir {work} is in use by another training run (process {first.pid} on host '
                f'{socket.gethostname()}') in r.stderr
        # no config dump, no log of its own
        assert sorted(p.name for p in work.iterdir()) == before and dump.stat().st_mtime_ns == dumped
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lock_work_dir(str(work)).release()  # a killed run leaves no lock that blocks


def test_show_dir_and_format_only_keep_relative_names(demo, tmp_path):
    root, ckpt = demo
    nested = ['data.test.img_dir=nested/images', 'data.test.ann_dir=nested/annotations']
    show, work = tmp_path / 'show', tmp_path / 'fmt'
    run('tools/test.py', CONFIG, ckpt, '--eval', 'mIoU', '--show-dir', str(show), *options(root, *nested))
    overlays = sorted(str(p.relative_to(show)) for p in show.rglob('*.jpg'))
    assert overlays == ['a/x.jpg', 'b/x.jpg']
    run('tools/test.py', CONFIG, ckpt, '--format-only', '--work-dir', str(work), *options(root, *nested))
    formatted = work / 'format_results'
    results = sorted(str(p.relative_to(formatted)) for p in formatted.rglob('*'))
    assert results == ['a', 'a/x.png', 'b', 'b/x.png']
    for sub in ('a', 'b'):
        assert mmcv.imread(str(work / 'format_results' / sub / 'x.png'), flag='unchanged').shape == (64, 64)
