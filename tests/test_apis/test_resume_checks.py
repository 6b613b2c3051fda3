"""Resume checks what it resumes: classes, seen / unseen split, weight shapes and batch layout
against the run, refused before any iteration with both sides named; --auto-resume past a
dangling latest.pth."""
import logging
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmcv.runner import save_checkpoint
from mmcv.utils import get_logger

import torch

from cascade_clip.core import RUN_META_KEY, AtomicIterBasedRunner, find_resume_checkpoint
from cascade_clip.utils import CheckpointError, safe_load
from tests.tiny import NAMES, build, tiny_model_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PY = sys.executable
LOGGER = get_logger('test_resume_checks')


def run(model, samples_per_gpu=2, micro_batches=1, world_size=2):
    """The meta train_segmentor gives the runner: what a resume must find unchanged."""
    return {RUN_META_KEY: dict(seen=list(model.vocabulary.seen), samples_per_gpu=samples_per_gpu,
                               micro_batches=micro_batches, world_size=world_size)}


def check_resume(path, model, any_batch_layout=False, **layout):
    """Resume ``path`` into a runner of ``model`` with the run ``layout``."""
    runner = AtomicIterBasedRunner(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                   work_dir=None, logger=LOGGER, max_iters=10, meta=run(model, **layout))
    runner.resume(path, any_batch_layout=any_batch_layout)
    return runner


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """A tiny model and its checkpoint as tools/train.py writes it (classes + run meta)."""
    d = tmp_path_factory.mktemp('resume')
    model = build(tiny_model_cfg())
    path = str(d / 'iter_4.pth')
    save_checkpoint(model, path, meta=dict(CLASSES=NAMES, epoch=1, iter=4, **run(model)))
    return model, path


def test_the_same_run_resumes(saved):
    model, path = saved
    assert check_resume(path, model).iter == 4


def test_other_classes_are_named(saved):
    _, path = saved
    other = build(tiny_model_cfg(names=['cat', 'dog', 'cow', 'tree', 'sky', 'river']))
    with pytest.raises(ValueError, match=r"cannot resume from .*iter_4.pth: it was trained on 6 "
                       r"classes, this run has 6; only in the checkpoint: \['road'\], only in "
                       r"this run: \['river'\]"):
        check_resume(path, other)
    swapped = build(tiny_model_cfg(names=['dog', 'cat', 'cow', 'tree', 'sky', 'road']))
    with pytest.raises(ValueError, match='the same names in another order'):
        check_resume(path, swapped)


def test_other_split_is_named(saved):
    _, path = saved
    other = build(tiny_model_cfg(base=[0, 1, 2, 4], novel=[3, 5]))
    with pytest.raises(ValueError, match=r"trained with seen classes \[0, 1, 3, 4\], this run has "
                       r"\[0, 1, 2, 4\]; unseen in the checkpoint \['cow', 'road'\], in this run "
                       r"\['tree', 'road'\]"):
        check_resume(path, other)


def test_other_prompt_length_names_the_keys_and_shapes(saved):
    _, path = saved
    other = build(tiny_model_cfg(backbone=dict(num_tokens=8)))
    with pytest.raises(CheckpointError) as e:
        check_resume(path, other)
    msg = str(e.value)
    assert 'iter_4.pth does not match the model of this run (cannot resume)' in msg
    assert ('2 keys of another shape: backbone.prompt_embeddings: checkpoint (1, 5, 64), model '
            '(1, 8, 64), backbone.deep_prompt_embeddings: checkpoint (11, 5, 64), model (11, 8, 64)') in msg


@pytest.mark.parametrize('layout,what', [
    (dict(samples_per_gpu=4), 'samples_per_gpu 2 -> 4'),
    (dict(micro_batches=2), 'micro_batches 1 -> 2'),
    (dict(world_size=1), 'world_size 2 -> 1'),
])
def test_other_batch_layout_refused_unless_asked(saved, caplog, layout, what):
    model, path = saved
    with pytest.raises(ValueError, match=rf'the batch layout differs \({what};.*--resume-any-batch'):
        check_resume(path, model, **layout)
    with caplog.at_level(logging.WARNING):
        check_resume(path, model, any_batch_layout=True, **layout)
    assert f'with another batch layout ({what}) as asked (--resume-any-batch)' in caplog.text


def test_checkpoint_without_run_meta_is_checked_for_classes_and_shapes(saved, tmp_path, caplog):
    model, _ = saved
    path = str(tmp_path / 'plain.pth')
    save_checkpoint(model, path, meta=dict(CLASSES=NAMES, epoch=1, iter=4))
    with caplog.at_level(logging.WARNING):
        check_resume(path, model, samples_per_gpu=8, world_size=3)
    assert 'does not record its seen classes and batch layout' in caplog.text
    other = build(tiny_model_cfg(backbone=dict(num_tokens=8)))
    with pytest.raises(CheckpointError, match='keys of another shape: backbone.prompt_embeddings'):
        check_resume(path, other, samples_per_gpu=8, world_size=3)


def test_auto_resume_past_a_dangling_latest(tmp_path, caplog):
    work = tmp_path / 'w'
    work.mkdir()
    assert find_resume_checkpoint(str(work)) is None
    model = build(tiny_model_cfg())
    for n in (2, 4):
        save_checkpoint(model, str(work / f'iter_{n}.pth'))
    (work / 'iter_6.pth').write_bytes(b'PK\x03\x04 cut short')  # not a complete checkpoint
    (work / 'notes_8.pth.txt').write_text('x')
    os.symlink('iter_4.pth', work / 'latest.pth')
    assert find_resume_checkpoint(str(work)) == str(work / 'latest.pth')
    os.remove(work / 'latest.pth')
    os.symlink('iter_9.pth', work / 'latest.pth')  # its target deleted
    with caplog.at_level(logging.WARNING):
        assert find_resume_checkpoint(str(work), LOGGER) == str(work / 'iter_4.pth')
    assert f'{work}/latest.pth points to iter_9.pth, which does not exist: resuming from the ' \
           f'newest complete checkpoint, {work}/iter_4.pth' in caplog.text


# ---------------------------------------------------------------- through tools/train.py
@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    from tools.demo_data import synthetic
    from tools.demo_data.tiny_clip import save_tiny_clip
    root = str(tmp_path_factory.mktemp('demo'))
    synthetic.make_dataset(root, num_train=4, num_val=2)
    np.save(osp.join(root, 'emb.npy'), synthetic.text_embeddings(32))
    save_tiny_clip(osp.join(root, 'clip.pt'), embed_dim=32, image_resolution=64, vision_patch_size=8,
                   vision_width=64, vision_layers=12, vision_heads=4)
    opts = [f'model.pretrained={root}/clip.pt', f'model.load_text_embedding={root}/emb.npy',
            'data.samples_per_gpu=2', 'checkpoint_config.interval=1', 'log_config.interval=1',
            'lr_config.warmup_iters=1']
    opts += [f'data.{s}.data_root={root}' for s in ('train', 'val', 'test')]
    config = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')
    work = str(tmp_path_factory.mktemp('work'))
    r = train(config, work, opts, 'runner.max_iters=1')
    assert r.returncode == 0, r.stderr[-3000:]
    return config, opts, work


def train(config, work, opts, *more, flags=()):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run([PY, 'tools/train.py', config, '--work-dir', work, '--no-validate', *flags,
                           '--cfg-options', *opts, *more], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_train_tool_writes_run_meta_and_refuses_another_batch(demo, tmp_path):
    config, opts, work = demo
    ckpt = osp.join(work, 'iter_1.pth')
    assert safe_load(ckpt)['meta'][RUN_META_KEY] == dict(
        seen=[0, 1, 3, 5, 7, 8, 9, 11], samples_per_gpu=2, micro_batches=1, world_size=1)
    resumed = str(tmp_path / 'resumed')
    r = train(config, resumed, opts, 'runner.max_iters=2', 'data.samples_per_gpu=1',
              flags=('--resume-from', ckpt))
    assert r.returncode != 0
    assert 'the batch layout differs (samples_per_gpu 2 -> 1;' in r.stderr and 'iter_1.pth' in r.stderr
    assert 'Iter [' not in r.stdout + r.stderr  # refused before the first iteration
    assert not any(f.endswith('.pth') for f in os.listdir(resumed))
    # another split through the config: refused, naming both
    r = train(config, resumed, opts, 'runner.max_iters=2', 'data.train.unseen_classes=[2,4,6,11]',
              'model.novel_class=[2,4,6,11]', 'model.base_class=[0,1,3,5,7,8,9,10]',
              flags=('--resume-from', ckpt))
    assert r.returncode != 0 and 'trained with seen classes [0, 1, 3, 5, 7, 8, 9, 11], this run has ' \
        '[0, 1, 3, 5, 7, 8, 9, 10]' in r.stderr
    assert not any(f.endswith('.pth') for f in os.listdir(resumed))
    # asked for: resumes with a warning and trains iteration 2
    r = train(config, resumed, opts, 'runner.max_iters=2', 'data.samples_per_gpu=1',
              flags=('--resume-from', ckpt, '--resume-any-batch'))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert 'with another batch layout (samples_per_gpu 2 -> 1) as asked' in out
    assert 'Iter [2/2]' in out and safe_load(osp.join(resumed, 'iter_2.pth'))['meta']['iter'] == 2


def test_train_tool_auto_resume_with_dangling_latest(demo, tmp_path):
    config, opts, work = demo
    import shutil
    w = tmp_path / 'auto'
    w.mkdir()
    shutil.copy(osp.join(work, 'iter_1.pth'), w / 'iter_1.pth')
    os.symlink('iter_7.pth', w / 'latest.pth')
    r = train(config, str(w), opts, 'runner.max_iters=2', flags=('--auto-resume', ))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert 'invalid literal' not in out
    assert f'points to iter_7.pth, which does not exist: resuming from the newest complete ' \
           f'checkpoint, {w}/iter_1.pth' in out
    assert 'resumed from epoch: 1, iter 1' in out and 'Iter [2/2]' in out
