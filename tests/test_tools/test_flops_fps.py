import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmcv import Config

from tests.tiny import tiny_model_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tiny_cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp('flops')
    model = tiny_model_cfg(test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))
    path = d / 'tiny.py'
    path.write_text(f"custom_imports = dict(imports=['cascade_clip'])\nmodel = {model!r}\n"
                    f"data = dict(test=dict(type='ZeroShotDataset', classes={model['class_names']!r}, "
                    f"data_root='{d}/nodata', img_dir='x', pipeline=[]))\n")
    return str(path)


def sdpa(inputs, outputs):
    from fvcore.nn.jit_handles import get_shape
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    b, h, l, d = q
    return 2 * b * h * l * k[2] * d


def test_get_flops_agrees_with_fvcore_directly(tiny_cfg):
    from fvcore.nn import FlopCountAnalysis
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import get_flops
    flops, total, trainable = get_flops.main([tiny_cfg, '--shape', '64', '64', '--device', 'cpu'])
    from cascade_clip.apis.measure import build_model_for_measurement
    model = build_model_for_measurement(Config.fromfile(tiny_cfg))
    model.class_embeddings()

    class Wrap(torch.nn.Module):

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.encode_decode(x, None)

    fca = FlopCountAnalysis(Wrap(model), (torch.randn(1, 3, 64, 64), ))
    fca.set_op_handle('aten::scaled_dot_product_attention', sdpa)
    assert flops == fca.total()
    assert total == sum(p.numel() for p in model.parameters())
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the ViT's matrix products by hand: 12 blocks of N=1+5+16 tokens, width 64
    n, c = 1 + 5 + 16, 64
    per_block = 3 * n * c * c + n * c * c + 8 * n * c * c + 2 * n * n * c
    vit = 12 * per_block + 16 * 3 * 16 * 16 * c  # + patch embedding conv
    bb = fca.by_module()['m.backbone']
    assert vit <= bb < 1.15 * vit


def test_get_fps_on_random_images(tiny_cfg, tmp_path):
    r = subprocess.run([sys.executable, 'tools/get_fps.py', tiny_cfg, '--device', 'cpu', '--num-images', '6',
                        '--warmup', '2', '--repeat', '2', '--work-dir', str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True,
                       env={'PYTHONWARNINGS': 'ignore', 'PATH': '/usr/bin:/bin', 'OMP_NUM_THREADS': '2'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'timing on random 64x64 images' in r.stderr
    assert 'run 2/2:' in r.stderr and 'img/s' in r.stderr
    files = list(tmp_path.glob('fps_*.json'))
    assert len(files) == 1
    out = json.load(open(files[0]))
    assert len(out['fps']) == 2 and out['average_fps'] > 0 and out['num_images'] == 6
    r = subprocess.run([sys.executable, 'tools/get_fps.py', tiny_cfg, '--device', 'cpu', '--num-images', '6',
                        '--warmup', '2', '--amp', 'bf16'], cwd=ROOT, capture_output=True, text=True,
                       env={'PYTHONWARNINGS': 'ignore', 'PATH': '/usr/bin:/bin', 'OMP_NUM_THREADS': '2'})
    assert r.returncode == 0, r.stderr[-3000:]
