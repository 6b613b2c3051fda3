"""tools/train.py and tools/test.py: config sections checked before any work, one training run
per work dir, overlays and result files inside the folders asked for, under their relative names."""
import logging
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
from tests.tool_runner import run_tool

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


def run(script, *args, check=True):
    """``tools/<script> args`` in this process (tests/tool_runner.py)."""
    r = run_tool(script, *args)
    if check and r.returncode != 0:
        raise AssertionError(f'{script} {args} failed:\n{r.stderr[-4000:]}')
    return r


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


# ------------------------------------------------------------ in-process runs of the tools
def demo_options(root, data_root=None):
    """options() with the data at ``data_root`` (default: ``root``), one training iteration."""
    opts = options(root)[1:]
    opts = [o for o in opts if not o.startswith(('data.train.data_root', 'data.val.data_root',
                                                 'data.test.data_root', 'runner.max_iters',
                                                 'checkpoint_config.interval'))]
    opts += ['runner.max_iters=1', 'checkpoint_config.interval=1', 'evaluation.interval=1']
    opts += [f'data.{s}.data_root={data_root or root}' for s in ('train', 'val', 'test')]
    return ['--cfg-options', *opts]


@pytest.fixture(scope='module')
def awkward_training(demo, tmp_path_factory):
    """tools/train.py (in-process) with an apostrophe, quotes and spaces in the work dir and the
    data root, and the config placed in its own work dir: exp/my.py --work-dir exp."""
    from tools import train
    root, _ = demo
    tmp = tmp_path_factory.mktemp('awkward')
    data_root = tmp / 'bob\'s "demo" data'
    os.symlink(root, data_root)
    work = tmp / "bob's runs" / 'w'
    work.mkdir(parents=True)
    mine = work / 'my.py'
    mine.write_text(Config.fromfile(CONFIG).pretty_text)  # the user's flattened config
    before = mine.read_bytes()
    logged = logging.Handler()  # the run's log (in-process, MMSeg's logger may have no file)
    logged.emit = lambda record: messages.append(record.getMessage())
    messages = []
    logging.getLogger('mmseg').addHandler(logged)
    try:
        train.main([str(mine), '--work-dir', str(work), '--no-validate',
                    *demo_options(root, str(data_root))])
    finally:
        logging.getLogger('mmseg').removeHandler(logged)
    return work, mine, before, str(data_root), '\n'.join(messages)


def test_train_with_quotes_in_paths_dumps_a_config_that_loads_back(awkward_training):
    work, _, _, data_root, _ = awkward_training
    assert osp.isfile(work / 'iter_1.pth')
    dumped = Config.fromfile(str(work / 'my.resolved.py'))
    assert dumped.work_dir == str(work) and "bob's runs" in dumped.work_dir
    for split in ('train', 'val', 'test'):
        assert dumped.data[split].data_root == data_root  # spaces and quotes kept
    assert dumped.runner.max_iters == 1 and dumped.model.pretrained.endswith('tiny_clip.pt')
    # the config text in the checkpoint loads too
    from cascade_clip.utils import safe_load
    meta = Config.fromstring(safe_load(str(work / 'iter_1.pth'))['meta']['config'], '.py')
    assert meta.data.train.data_root == data_root
    assert not [p for p in os.listdir(work) if '.tmp-' in p]


def test_train_never_overwrites_the_config_in_its_work_dir(awkward_training):
    work, mine, before, _, log = awkward_training
    assert mine.read_bytes() == before
    assert (f'resolved config written to {work}/my.resolved.py, not to my.py there: that file is '
            f'the config itself or a file of yours') in log


def test_a_value_no_config_file_holds_stops_train_before_the_work_dir(demo, tmp_path, monkeypatch):
    from tools import train
    root, _ = demo
    work = tmp_path / 'w'
    monkeypatch.setattr(train, 'resolve_precision', lambda cfg, logger: cfg.model.update(ids={1, 2}))
    with pytest.raises(SystemExit, match=rf'^error: config {CONFIG}: config key model.ids: the '
                       r'value \{1, 2\} \(set\) cannot be written to a config file'):
        train.main([CONFIG, '--work-dir', str(work), *demo_options(root)])
    assert not work.exists()


def test_missing_custom_import_is_named_by_train_and_test(demo, tmp_path):
    from tools import test as test_tool
    from tools import train
    root, ckpt = demo
    cfg = tmp_path / 'plugin.py'
    cfg.write_text(f"_base_ = ['{CONFIG}']\ncustom_imports = dict(imports=['cascade_clip', "
                   f"'cascade_clip_plugins'])\n")
    message = (rf"config {cfg}: custom_imports.imports names the module 'cascade_clip_plugins', "
               r"which cannot be imported \(ModuleNotFoundError: No module named 'cascade_clip_plugins'\)")
    with pytest.raises(ImportError, match=message):
        train.main([str(cfg), '--work-dir', str(tmp_path / 'w'), *demo_options(root)])
    with pytest.raises(ImportError, match=message):
        test_tool.main([str(cfg), ckpt, '--eval', 'mIoU', '--work-dir', str(tmp_path / 't'),
                        *demo_options(root)])
    assert sorted(os.listdir(tmp_path)) == ['plugin.py']


def image_folder_state(root):
    return {p: open(osp.join(dp, p), 'rb').read() for dp, _, fs in os.walk(osp.join(root, 'images'))
            for p in fs}


@pytest.mark.parametrize('args, named', [
    (['--eval', 'mIoU', '--show-dir', '{root}/images/val'],
     "--show-dir {root}/images/val is the dataset's image folder {root}/images/val"),
    (['--eval', 'mIoU', '--show-dir', '{root}/images/val/overlays'],
     "--show-dir {root}/images/val/overlays is inside the dataset's image folder {root}/images/val"),
    (['--eval', 'mIoU', '--show-dir', '{root}'],
     "--show-dir {root} contains the dataset's image folder {root}/images/val"),
    (['--format-only', '--eval-options', 'imgfile_prefix={root}/annotations/val'],
     "the --format-only results folder {root}/annotations/val is the dataset's label folder "
     "{root}/annotations/val"),
    (['--format-only', '--work-dir', '{root}/images/val'],
     "the --format-only results folder {root}/images/val/format_results is inside the dataset's "
     "image folder {root}/images/val"),
    (['--eval', 'mIoU', '--work-dir', '{root}/annotations/val'],
     "the metrics file {root}/annotations/val/eval_"),
    (['--out', '{root}/images/val/results.pkl'],
     "--out {root}/images/val/results.pkl is inside the dataset's image folder"),
])
def test_outputs_into_the_dataset_folders_are_refused_before_testing(demo, args, named):
    from tools import test as test_tool
    root, ckpt = demo
    before = image_folder_state(root)
    args = [a.format(root=root) for a in args]
    with pytest.raises(SystemExit) as e:
        test_tool.main([CONFIG, ckpt, *args, *demo_options(root)])
    assert str(e.value).startswith('error: ') and named.format(root=root) in str(e.value)
    assert image_folder_state(root) == before
    assert not osp.exists(osp.join(root, 'images', 'val', 'overlays'))
    assert sorted(os.listdir(osp.join(root, 'annotations'))) == ['train', 'val']


def full_disk(monkeypatch, fail_at):
    """The ``fail_at``-th file MMCV writes (images, pickles) is cut half way by ENOSPC."""
    from mmcv.fileio.file_client import HardDiskBackend
    calls, real = [], HardDiskBackend.put

    def put(self, obj, filepath):
        calls.append(filepath)
        if len(calls) == fail_at:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(28, 'No space left on device')
        return real(self, obj, filepath)
    monkeypatch.setattr(HardDiskBackend, 'put', put)


@pytest.mark.parametrize('args, folder, kept, failed', [
    (['--format-only', '--work-dir', '{tmp}'], 'format_results', ['val_0000.png'], 'val_0001.png'),
    (['--eval', 'mIoU', '--show-dir', '{tmp}/show'], 'show', ['val_0000.jpg'], 'val_0001.jpg'),
    (['--out', '{tmp}/res/results.pkl'], 'res', [], 'results.pkl'),
])
def test_a_full_disk_names_the_file_and_leaves_no_partial_output(demo, tmp_path, monkeypatch, args,
                                                                  folder, kept, failed):
    from tools import test as test_tool
    root, ckpt = demo
    full_disk(monkeypatch, fail_at=len(kept) + 1)
    with pytest.raises(OSError) as e:
        test_tool.main([CONFIG, ckpt, *[a.format(tmp=tmp_path) for a in args], *demo_options(root)])
    assert str(e.value).startswith(f'[Errno 28] could not write {tmp_path}/{folder}/{failed}: no '
                                   f'space left on the device')
    assert sorted(os.listdir(tmp_path / folder)) == kept  # no partial file, no temporary file
    for name in kept:
        assert mmcv.imread(str(tmp_path / folder / name)).shape[:2] >= (64, 64)


def test_a_full_disk_during_the_metrics_json_leaves_nothing(demo, tmp_path, monkeypatch):
    from tools import test as test_tool
    from cascade_clip.utils import results
    root, ckpt = demo

    def cut(obj, f, **kwargs):
        f.write('{"config": ')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(results.json, 'dump', cut)
    with pytest.raises(OSError, match=rf'^\[Errno 28\] could not write {tmp_path}/w/eval_\d{{8}}_\d{{6}}_'
                       rf'{os.getpid()}.json: no space left on the device'):
        test_tool.main([CONFIG, ckpt, '--eval', 'mIoU', '--work-dir', str(tmp_path / 'w'),
                        *demo_options(root)])
    assert os.listdir(tmp_path / 'w') == []
