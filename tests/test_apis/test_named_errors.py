"""Errors that name the user's key and value, found before any work; init_model accepts an
mmcv.Config as well as a path."""
import copy
import os.path as osp

import pytest
import torch
from mmcv import Config
from mmcv.runner import save_checkpoint

from cascade_clip.apis import init_model
from cascade_clip.apis import check_config
from tests.tiny import NAMES, build, tiny_model_cfg
from tests.tool_runner import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.parametrize('cfg,message', [
    (dict(data=dict(samples_per_gpu=0)), 'data.samples_per_gpu=0 cannot train: it must be a whole number >= 1'),
    (dict(data=dict(samples_per_gpu=2, train_dataloader=dict(samples_per_gpu=-1))),
     'data.train_dataloader.samples_per_gpu=-1 cannot train'),
    (dict(data=dict(samples_per_gpu=2.5)), 'data.samples_per_gpu=2.5 cannot train'),
    (dict(data=dict(workers_per_gpu=-1)), r'data.workers_per_gpu=-1 cannot train: it must be a whole '
                                          r'number >= 0 \(0 loads in the main process\)'),
    (dict(runner=dict(type='AtomicIterBasedRunner', max_iters=0)), 'runner.max_iters=0 cannot train'),
    (dict(runner=dict(type='AtomicIterBasedRunner', max_iters=-5)), 'runner.max_iters=-5 cannot train'),
    (dict(total_iters=0), 'total_iters=0 cannot train'),
])
def test_values_that_cannot_train(cfg, message):
    with pytest.raises(ValueError, match=message):
        check_config(Config(cfg), 'train')


def test_good_values_pass():
    check_config(Config(dict(data=dict(samples_per_gpu=1, workers_per_gpu=0),
                             runner=dict(type='AtomicIterBasedRunner', max_iters=1))), 'train')


@pytest.mark.parametrize('option,message', [
    ('data.samples_per_gpu=0', 'data.samples_per_gpu=0 cannot train'),
    ('runner.max_iters=0', 'runner.max_iters=0 cannot train'),
    ('data.workers_per_gpu=-2', 'data.workers_per_gpu=-2 cannot train'),
])
def test_train_tool_refuses_before_any_work(tmp_path, option, message):
    work = tmp_path / 'w'
    r = run_tool('train', osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py'),
                 '--work-dir', str(work), '--cfg-options', option)
    assert r.returncode != 0 and message in r.stderr
    assert not work.exists()  # no work dir, log, dataset or model before the refusal


def test_init_model_accepts_a_config_object(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_model_cfg()
    model = build(cfg)
    ckpt = str(tmp_path / 'm.pth')
    save_checkpoint(model, ckpt, meta=dict(CLASSES=NAMES))
    pipeline = [dict(type='LoadImageFromFile')]
    text = (f"model = {cfg!r}\ndata = dict(test=dict(type='ZeroShotDataset', classes={NAMES!r}, "
            f"img_dir='img', pipeline={pipeline!r}))\n")
    path = tmp_path / 'tiny.py'
    path.write_text(text)
    config = Config.fromfile(str(path))
    config.model.pretrained = 'kept.pt'
    before = copy.deepcopy(config._cfg_dict.to_dict())
    from_object = init_model(config, ckpt)
    assert config._cfg_dict.to_dict() == before  # the caller's config is left as it was
    from_path = init_model(str(path), ckpt)
    img = torch.randn(1, 3, 64, 64)
    meta = [dict(ori_shape=(64, 64, 3), img_shape=(64, 64, 3), pad_shape=(64, 64, 3), flip=False)]
    with torch.no_grad():
        want = model.eval().encode_decode(img, meta)
        assert torch.equal(from_object.encode_decode(img, meta), want)
        assert torch.equal(from_path.encode_decode(img, meta), want)
    with pytest.raises(TypeError, match='config must be a config file path or an mmcv.Config, got dict'):
        init_model(dict(cfg), ckpt)
