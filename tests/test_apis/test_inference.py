import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmcv.runner import save_checkpoint

from cascade_clip.apis import init_model, segment_image, set_vocabulary
from cascade_clip.utils import legend_names
from tests.tiny import build, tiny_model_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tiny_files(tmp_path_factory):
    """A tiny config file of the real structure and a checkpoint trained on 6 classes."""
    d = tmp_path_factory.mktemp('api')
    torch.manual_seed(0)
    model_cfg = tiny_model_cfg(test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))
    cfg_text = f'''custom_imports = dict(imports=['cascade_clip'], allow_failed_imports=False)
model = {model_cfg!r}
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
data = dict(test=dict(type='ZeroShotDataset', classes={model_cfg["class_names"]!r}, img_dir='x',
    pipeline=[dict(type='LoadImageFromFile'),
              dict(type='MultiScaleFlipAug', img_scale=(96, 64), flip=False, transforms=[
                  dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                  dict(type='Normalize', **img_norm_cfg), dict(type='ImageToTensor', keys=['img']),
                  dict(type='Collect', keys=['img'])])]))
'''
    cfg_path = d / 'tiny_cfg.py'
    cfg_path.write_text(cfg_text)
    model = build(model_cfg)
    ckpt = str(d / 'tiny.pth')
    save_checkpoint(model, ckpt, meta=dict(CLASSES=model_cfg['class_names']))
    img = (np.random.RandomState(0).rand(50, 90, 3) * 255).astype(np.uint8)
    img_path = str(d / 'photo.jpg')
    mmcv.imwrite(img, img_path)
    return str(cfg_path), ckpt, img_path, d


def test_api_custom_vocabulary_non_square(tiny_files):
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt, device='cpu', class_names=['cat', 'sofa', 'window'])
    labels, scores = segment_image(model, img_path)
    assert labels.shape == (50, 90) and scores.shape == (3, 50, 90)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert np.array_equal(labels, scores.argmax(0))
    assert model.CLASSES == ('cat', 'sofa', 'window')
    # embeddings: computed once from the names with the checkpoint's text encoder
    from cascade_clip import tokenize
    with torch.no_grad():
        f = model.text_encoder(tokenize([f'a photo of a {n}' for n in ('cat', 'sofa', 'window')]))
    torch.testing.assert_close(model.text_embeddings, f / f.norm(dim=-1, keepdim=True))
    # the whole vocabulary is "seen": calibration shifts every score by the same 0.1
    assert model.decode_head.seen_idx == [0, 1, 2]
    # an array input gives the same result
    labels2, _ = segment_image(model, mmcv.imread(img_path))
    assert np.array_equal(labels, labels2)


def test_api_default_vocabulary_and_set_vocabulary(tiny_files):
    cfg, ckpt, img_path, _ = tiny_files
    model = init_model(cfg, ckpt)
    assert len(model.CLASSES) == 6
    labels, scores = segment_image(model, img_path)
    assert scores.shape == (6, 50, 90)
    set_vocabulary(model, ['sky', 'road'], seen=[0])
    labels, scores = segment_image(model, img_path)
    assert scores.shape == (2, 50, 90) and set(np.unique(labels)) <= {0, 1}
    assert model.decode_head.seen_idx == [0]


def test_api_errors(tiny_files, tmp_path):
    cfg, ckpt, img_path, _ = tiny_files
    with pytest.raises(ValueError, match='empty'):
        init_model(cfg, ckpt, class_names=[])
    with pytest.raises(ValueError, match=r"duplicate class names: \['cat'\]"):
        init_model(cfg, ckpt, class_names=['cat', 'dog', 'cat'])
    model = init_model(cfg, ckpt)
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='cannot read image .*broken.jpg'):
        segment_image(model, str(bad))
    with pytest.raises(FileNotFoundError, match='image not found'):
        segment_image(model, str(tmp_path / 'nope.jpg'))
    # a checkpoint trained on another number of classes needs the vocabulary
    m = build(tiny_model_cfg())
    other = str(tmp_path / 'other.pth')
    save_checkpoint(m, other, meta=dict(CLASSES=['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']))
    with pytest.raises(ValueError, match='trained with 8 classes but the config .* describes 6'):
        init_model(cfg, other)


def test_demo_tool_writes_overlay_and_mask(tiny_files, tmp_path):
    cfg, ckpt, img_path, _ = tiny_files
    out, mask = str(tmp_path / 'overlay.png'), str(tmp_path / 'mask.png')
    r = subprocess.run([sys.executable, 'tools/demo.py', img_path, '--config', cfg, '--checkpoint', ckpt,
                        '--classes', 'cat,sofa,window', '--device', 'cpu', '--out', out,
                        '--out-mask', mask, '--opacity', '0.6'],
                       cwd=ROOT, capture_output=True, text=True, env={'PYTHONWARNINGS': 'ignore', 'PATH': '/usr/bin:/bin'})
    assert r.returncode == 0, r.stderr[-3000:]
    m = mmcv.imread(mask, flag='unchanged')
    assert m.shape == (50, 90) and set(np.unique(m)) <= {0, 1, 2}
    ov = mmcv.imread(out)
    assert ov.shape[0] >= 50 and ov.shape[1] > 90
    present = legend_names(m, ['cat', 'sofa', 'window'])
    assert f'classes present: {", ".join(present)}' in r.stderr + r.stdout
    r = subprocess.run([sys.executable, 'tools/demo.py', img_path, '--config', cfg, '--checkpoint', ckpt,
                        '--classes', 'cat,cat'], cwd=ROOT, capture_output=True, text=True,
                       env={'PYTHONWARNINGS': 'ignore', 'PATH': '/usr/bin:/bin'})
    assert r.returncode != 0 and 'duplicate class names' in r.stderr


def test_overlay_legend_lists_exactly_the_present_classes():
    from cascade_clip.utils import draw_segmentation
    img = np.zeros((20, 30, 3), np.uint8)
    seg = np.zeros((20, 30), np.int64)
    seg[:, 20:] = 2
    seg[0, 0] = 255
    names = ['cat', 'sofa', 'window']
    assert legend_names(seg, names) == ['cat', 'window']
    out = draw_segmentation(img, seg, names, [[255, 0, 0], [0, 255, 0], [0, 0, 255]], opacity=1.0,
                            min_size=0)
    assert out.shape[0] >= 20 and out.shape[1] > 30
    assert tuple(out[5, 5]) == (0, 0, 255)  # BGR of red
    assert tuple(out[5, 25]) == (255, 0, 0)  # BGR of blue
    assert tuple(out[0, 0]) == (0, 0, 0)  # ignore value: uncoloured
    with pytest.raises(ValueError, match='opacity'):
        draw_segmentation(img, seg, names, opacity=0)


def test_small_overlays_are_enlarged_nearest_neighbour():
    from cascade_clip.utils import draw_segmentation
    img = np.zeros((20, 30, 3), np.uint8)
    seg = np.zeros((20, 30), np.int64)
    seg[:, 20:] = 2
    seg[0, 0] = 255
    pal = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    plain = draw_segmentation(img, seg, ['cat', 'sofa', 'window'], pal, opacity=1.0, min_size=0)
    big = draw_segmentation(img, seg, ['cat', 'sofa', 'window'], pal, opacity=1.0, min_size=100)
    # longer side 30 < 100: factor ceil(100 / 30) = 4, each pixel a 4 x 4 block
    assert big.shape[0] == 80 and big.shape[1] - 120 == plain.shape[1] - 30  # same legend panel
    assert (big[:4, :4] == 0).all()  # the ignored pixel (0, 0), uncoloured
    assert tuple(big[4, 0]) == (0, 0, 255) and tuple(big[0, 4]) == (0, 0, 255)
    assert (big[:, 80:120] == (255, 0, 0)).all()  # columns 20-29 of class 2, blue in BGR
    assert (big[:, 79] == (0, 0, 255)).all()
    # an image already as large as min_size is left at its size
    same = draw_segmentation(img, seg, ['cat', 'sofa', 'window'], pal, opacity=1.0, min_size=30)
    assert np.array_equal(same, plain)
