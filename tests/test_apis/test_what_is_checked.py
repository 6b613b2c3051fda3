"""The cases of docs/reliability.md (what is checked): refused before any work, with a message
naming the file, key or class; no code from a checkpoint runs."""
import os
import os.path as osp
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint

from cascade_clip.apis import init_model, load_weights
from cascade_clip.utils import CheckpointError, safe_load
from tests.tool_runner import run_tool
from tests.tiny import NAMES, build, tiny_model_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PY = sys.executable


class Payload:
    """Pickles as a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('checked')
    torch.manual_seed(0)
    cfg = tiny_model_cfg(test_cfg=dict(mode='whole'))
    img_norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    test_pipeline = [dict(type='LoadImageFromFile'),
                     dict(type='MultiScaleFlipAug', img_scale=(64, 64), flip=False, transforms=[
                         dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                         dict(type='Normalize', **img_norm), dict(type='ImageToTensor', keys=['img']),
                         dict(type='Collect', keys=['img'])])]
    # a tiny dataset in MMSeg's generic layout: 2 images, label maps with ids 0..5
    rng = np.random.RandomState(0)
    for i in range(2):
        mmcv.imwrite((rng.rand(64, 64, 3) * 255).astype(np.uint8), str(d / 'data/img' / f'{i}.jpg'))
        mmcv.imwrite(rng.randint(0, 6, (64, 64)).astype(np.uint8), str(d / 'data/ann' / f'{i}.png'))
    cfg_path = d / 'tiny.py'
    cfg_path.write_text(
        f"custom_imports = dict(imports=['cascade_clip'])\nmodel = {cfg!r}\n"
        f"data = dict(samples_per_gpu=1, workers_per_gpu=0, persistent_workers=False, test=dict(type='ZeroShotDataset', "
        f"classes={NAMES!r}, unseen_classes=[2, 5], data_root='{d}/data', img_dir='img', "
        f"ann_dir='ann', pipeline={test_pipeline!r}))\n")
    model = build(cfg)
    good = str(d / 'good.pth')
    save_checkpoint(model, good, meta=dict(CLASSES=NAMES))
    return d, str(cfg_path), good, model


def run(script, *args):
    return run_tool(script, *args)


# ---------------------------------------------------------------- 1. code in a checkpoint
def test_pickled_code_never_runs(files, tmp_path):
    d, cfg, good, model = files
    marker = tmp_path / 'PWNED'
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'x': Payload(marker)}}, evil)
    with pytest.raises(CheckpointError, match=r"refused to load .*evil.pth: it needs the type\(s\) "
                       r"posix.system.*Nothing from the file was run"):
        safe_load(evil)
    with pytest.raises(CheckpointError, match='posix.system'):
        init_model(cfg, evil)
    r = run('tools/test.py', cfg, evil, '--eval', 'mIoU')
    assert r.returncode != 0 and 'posix.system' in r.stderr and 'evil.pth' in r.stderr
    r = run('tools/demo.py', str(d / 'data/img/0.jpg'), '--config', cfg, '--checkpoint', evil,
            '--out', str(tmp_path / 'o.png'))
    assert r.returncode != 0 and 'posix.system' in r.stderr
    # MMCV's own loader (runner resume / load_from, MMSeg's stock tools) is the safe one too
    from mmcv.runner import load_checkpoint
    with pytest.raises(CheckpointError, match='posix.system'):
        load_checkpoint(build(tiny_model_cfg()), evil)
    assert not marker.exists()


def test_project_and_mmcv_checkpoints_load_with_numpy_meta(files, tmp_path):
    """MMSeg 0.x writes a numpy PALETTE (custom classes) and numpy seeds into meta."""
    d, cfg, good, model = files
    path = str(tmp_path / 'np_meta.pth')
    save_checkpoint(model, path, meta=dict(CLASSES=NAMES, PALETTE=np.random.randint(0, 255, (6, 3)),
                                           seed=np.int64(3), lr=np.float64(1e-4)))
    ckpt = safe_load(path)
    assert ckpt['meta']['PALETTE'].shape == (6, 3) and int(ckpt['meta']['seed']) == 3
    m = init_model(cfg, path)
    for k, v in model.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k


def test_text_file_as_checkpoint(files, tmp_path):
    _, cfg, _, _ = files
    txt = tmp_path / 'notes.pth'
    txt.write_text('these are not weights\n')
    with pytest.raises(CheckpointError, match=r'notes.pth is not a .*torch checkpoint'):
        init_model(cfg, str(txt))
    r = run('tools/test.py', cfg, str(txt), '--eval', 'mIoU')
    assert r.returncode != 0 and 'notes.pth is not a' in r.stderr and 'Traceback' not in r.stderr[-300:]


# ---------------------------------------------------------------- 2. checkpoints that match nothing
def test_empty_and_foreign_checkpoints_are_refused(files, tmp_path):
    d, cfg, good, model = files
    empty = str(tmp_path / 'empty.pth')
    torch.save({'state_dict': {}, 'meta': {}}, empty)
    n = len(model.state_dict()) - 1  # the loss buffer may be absent (declared optional)
    with pytest.raises(CheckpointError, match=rf'empty.pth does not match the model \(model from '
                       rf'.*tiny.py\): {n} missing keys: backbone.class_embedding, .*\({n - 5} more\)'):
        init_model(cfg, empty)
    # another architecture: 8 prompt tokens instead of 5, one decoder layer less
    other = build(tiny_model_cfg(backbone=dict(num_tokens=8), decode_head=dict(num_layers=2)))
    foreign = str(tmp_path / 'foreign.pth')
    save_checkpoint(other, foreign, meta=dict(CLASSES=NAMES))
    with pytest.raises(CheckpointError) as e:
        init_model(cfg, foreign)
    msg = str(e.value)
    assert 'missing keys: decode_head.cascade_decoders.0.layers.2' in msg
    assert 'keys of another shape: backbone.prompt_embeddings: checkpoint (1, 8, 64), model (1, 5, 64)' in msg
    r = run('tools/test.py', cfg, foreign, '--eval', 'mIoU')
    assert r.returncode != 0 and 'foreign.pth does not match the model' in r.stderr
    assert 'mIoU' not in r.stdout  # no metrics of a random network
    r = run('tools/get_flops.py', cfg, '--checkpoint', foreign, '--shape', '64', '64')
    assert r.returncode != 0 and 'foreign.pth does not match the model' in r.stderr


def test_partial_loading_logs_what_was_skipped(files, tmp_path, caplog):
    d, cfg, good, model = files
    other = build(tiny_model_cfg(backbone=dict(num_tokens=8)))
    path = str(tmp_path / 'other.pth')
    save_checkpoint(other, path)
    fresh = build(tiny_model_cfg())
    before = fresh.backbone.prompt_embeddings.detach().clone()
    from mmcv.utils import get_logger
    logger = get_logger('partial_test')
    with caplog.at_level('INFO'):
        load_weights(fresh, path, strict=False, logger=logger)
    text = caplog.text
    assert '0 missing keys (kept at their initialisation)' in text and '0 unexpected keys (ignored)' in text
    assert ('2 keys of another shape (kept at their initialisation): backbone.prompt_embeddings: '
            'checkpoint (1, 8, 64), model (1, 5, 64), backbone.deep_prompt_embeddings') in text
    assert torch.equal(fresh.backbone.prompt_embeddings, before)
    assert torch.equal(fresh.backbone.conv1.weight, other.backbone.conv1.weight)


def test_published_layout_checkpoint_loads_strictly(files, tmp_path):
    """A checkpoint in the published layout: MMSeg's 'state_dict' + 'meta', a DataParallel
    'module.' prefix, the loss buffer sized by the published 156 seen classes."""
    d, cfg, good, model = files
    sd = {f'module.{k}': v for k, v in model.state_dict().items()}
    sd['module.decode_head.loss_decode.criterion.empty_weight'] = torch.ones(157)
    path = str(tmp_path / 'published.pth')
    torch.save({'state_dict': sd, 'meta': dict(CLASSES=tuple(NAMES), mmseg_version='0.20.2')}, path)
    m = init_model(cfg, path)
    img = torch.randn(1, 3, 64, 64)
    meta = [dict(ori_shape=(64, 64, 3), img_shape=(64, 64, 3), pad_shape=(64, 64, 3), flip=False)]
    model.eval()
    with torch.no_grad():
        assert torch.equal(m.encode_decode(img, meta), model.encode_decode(img, meta))


# ---------------------------------------------------------------- 3. misspelt config keys
@pytest.mark.parametrize('override,message', [
    (dict(self_trainning=True), "CascadeCLIP: unknown argument 'self_trainning' (did you mean 'self_training'?)"),
    (dict(decode_head=dict(loss_decode=dict(type='SegLossPlus', dice_wieght=2.0))),
     "ATMSingleHeadSeg: SegLossPlus: unknown argument 'dice_wieght' (did you mean 'dice_weight'?)"),
    (dict(backbone=dict(drop_path_rat=0.2)), "unknown argument 'drop_path_rat' (did you mean 'drop_path_rate'?)"),
    (dict(text_encoder=dict(contex_length=77)), "unknown argument 'contex_length' (did you mean 'context_length'?)"),
    (dict(decode_head=dict(cascade_stage=[[-1]])), "unknown argument 'cascade_stage' (did you mean 'cascade_stages'?)"),
])
def test_misspelt_model_keys(override, message):
    cfg = tiny_model_cfg()
    for k, v in override.items():
        if isinstance(v, dict):
            cfg[k] = dict(cfg[k], **{kk: (dict(cfg[k][kk], **vv) if isinstance(vv, dict) else vv)
                                     for kk, vv in v.items()})
        else:
            cfg[k] = v
    with pytest.raises(TypeError) as e:
        build(cfg)
    assert message in str(e.value)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The demo config on a tiny synthetic dataset: options for tools/train.py."""
    from tools.demo_data import synthetic
    from tools.demo_data.tiny_clip import save_tiny_clip
    root = str(tmp_path_factory.mktemp('demo'))
    synthetic.make_dataset(root, num_train=4, num_val=2)
    np.save(osp.join(root, 'emb.npy'), synthetic.text_embeddings(32))
    save_tiny_clip(osp.join(root, 'clip.pt'), embed_dim=32, image_resolution=64, vision_patch_size=8,
                   vision_width=64, vision_layers=12, vision_heads=4)
    opts = [f'model.pretrained={root}/clip.pt', f'model.load_text_embedding={root}/emb.npy',
            'runner.max_iters=1', 'data.samples_per_gpu=2']
    opts += [f'data.{s}.data_root={root}' for s in ('train', 'val', 'test')]
    return osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py'), opts


def test_misspelt_keys_through_train_tool(demo, tmp_path):
    config, opts = demo
    r = run('tools/train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts,
            'model.self_trainning=True')
    assert r.returncode != 0 and "did you mean 'self_training'?" in r.stderr
    r = run('tools/train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts,
            'model.decode_head.loss_decode.dice_wieght=2.0')
    assert r.returncode != 0 and "unknown argument 'dice_wieght' (did you mean 'dice_weight'?)" in r.stderr
    # a variable of the config files: refused with the key that works, before any work
    r = run('tools/train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts,
            'img_norm_cfg.to_rgb=False')
    assert r.returncode != 0 and "override the key(s) it set: data.train.pipeline.3.to_rgb" in r.stderr
    assert not (tmp_path / 'w' / 'latest.pth').exists()


def test_misspelt_dataset_and_hook_keys():
    from mmseg.datasets import build_dataset
    with pytest.raises(TypeError, match=r"unknown argument 'unseen_class' \(did you mean 'unseen_classes'\?\)"):
        build_dataset(dict(type='ZeroShotDataset', img_dir='x', pipeline=[], unseen_class=[1]))
    from mmcv.runner import HOOKS
    from mmcv.utils import build_from_cfg
    with pytest.raises(TypeError, match=r"unknown argument 'grad_clips' \(did you mean 'grad_clip'\?\)"):
        build_from_cfg(dict(type='LossScaleOptimizerHook', grad_clips=None), HOOKS)


def test_published_compatibility_keys_are_accepted():
    cfg = tiny_model_cfg(tau=0.07)
    cfg['decode_head'].update(use_stages=7, use_proj=False, crop_train=False)
    build(cfg)  # accepted, documented as unused


# ---------------------------------------------------------------- 4. one split
def test_split_mismatch_train_and_test(files, demo, tmp_path):
    d, cfg, good, _ = files
    # the dataset calls "cow" (2) and "tree" (3) unseen, the model "cow" and "road" (5)
    opts = ['--cfg-options', 'data.test.unseen_classes=[2,3]']
    r = run('tools/test.py', cfg, good, '--eval', 'mIoU', *opts)
    assert r.returncode != 0
    assert ("the model's unseen classes (novel_class) are [2, 5] ['cow', 'road'], the dataset "
            "ZeroShotDataset's unseen_classes are [2, 3] ['cow', 'tree']") in r.stderr
    config, opts = demo
    r = run('tools/train.py', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts,
            'data.train.unseen_classes=[2,4,6,11]')
    assert r.returncode != 0 and 'split mismatch' in r.stderr
    assert "the dataset ZeroShotDataset's unseen_classes are [2, 4, 6, 11]" in r.stderr
    assert not (tmp_path / 'w' / 'latest.pth').exists()


# ---------------------------------------------------------------- 5. embeddings and names
@pytest.mark.parametrize('value,what', [(np.nan, 'is not finite'), (0.0, 'is all zeros')])
def test_broken_embedding_rows(tmp_path, value, what):
    emb = np.random.RandomState(0).randn(6, 32).astype(np.float32)
    emb[3] = value
    path = tmp_path / 'emb.npy'
    np.save(path, emb)
    with pytest.raises(ValueError, match=rf"row 3 \(class 'tree'\) in .*emb.npy {what}"):
        build(tiny_model_cfg(load_text_embedding=str(path)))


def test_class_names_equal_up_to_case_and_space():
    with pytest.raises(ValueError, match=r"'red flat' \(position 0\) and 'Red  flat ' \(position 1\) "
                       r"are the same class"):
        build(tiny_model_cfg(names=['red flat', 'Red  flat ', 'cow', 'tree', 'sky', 'road']))
    model = build(tiny_model_cfg())
    with pytest.raises(ValueError, match='same class up to case'):
        model.set_vocabulary(['Cat', 'cat'])


# ---------------------------------------------------------------- 6. CLIP files that do not cover
def test_partial_clip_files(tiny_clip, tmp_path):
    from tools.demo_data.tiny_clip import save_tiny_clip
    from tests.conftest import TINY
    cfg = tiny_model_cfg(pretrained=tiny_clip[0], backbone=dict(layers=16))
    with pytest.raises(ValueError, match=r'does not cover the image encoder of the config \(the file has 12 '
                       r'blocks, the config 16\): missing from the file: blocks \[12, 13, 14, 15\]'):
        build(cfg)
    # a file that lacks one block
    sd = save_tiny_clip(str(tmp_path / 'full.pth'), torchscript=False, **TINY)
    sd = {k: v for k, v in sd.items() if not k.startswith('visual.transformer.resblocks.3.')}
    torch.save(sd, tmp_path / 'holed.pth')
    with pytest.raises(ValueError, match=r'missing from the file: blocks \[3\]'):
        build(tiny_model_cfg(pretrained=str(tmp_path / 'holed.pth')))
    # a text tower deeper than the config
    with pytest.raises(ValueError, match=r'text encoder of the config \(the file has 2 blocks, the config 1\): '
                       r'in the file but not in the model: blocks \[1\]'):
        build(tiny_model_cfg(pretrained=tiny_clip[0], text_encoder=dict(transformer_layers=1)))


# ---------------------------------------------------------------- 8. unclear errors made clear
def test_rgb_label_map(files, tmp_path):
    from mmseg.datasets import build_dataset
    d, _, _, _ = files
    root = tmp_path / 'rgb'
    mmcv.imwrite(np.zeros((16, 16, 3), np.uint8), str(root / 'img/a.jpg'))
    mmcv.imwrite(np.zeros((16, 16, 3), np.uint8), str(root / 'ann/a.png'))
    ds = build_dataset(dict(type='ZeroShotDataset', classes=NAMES, data_root=str(root), img_dir='img',
                            ann_dir='ann', pipeline=[dict(type='LoadImageFromFile'),
                                                     dict(type='LoadAnnotations')]))
    with pytest.raises(ValueError, match=r'label map .*a.png has shape \(16, 16, 3\): expected a '
                       r'single-channel \(H, W\) map of class ids'):
        ds[0]


def test_narrow_image_in_demo_tool(files, tmp_path):
    _, cfg, good, _ = files
    img = str(tmp_path / 'narrow.jpg')
    mmcv.imwrite((np.random.RandomState(0).rand(200, 3000, 3) * 255).astype(np.uint8), img)
    mask = str(tmp_path / 'mask.png')
    r = run('tools/demo.py', img, '--config', cfg, '--checkpoint', good, '--classes', 'sky,road',
            '--out', str(tmp_path / 'o.png'), '--out-mask', mask)
    assert r.returncode == 0, r.stderr[-3000:]
    assert mmcv.imread(mask, flag='unchanged').shape == (200, 3000)
