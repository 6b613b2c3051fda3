import json
import os.path as osp
import subprocess
import sys

import pytest
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


def flops_by_hand():
    """Multiply-adds of one 64x64 crop through the tiny model (tests/tiny.py), written out
    from its structure with fvcore's conventions: one multiply-add per term of a matrix
    product (linear, matmul, bmm, conv, and both products of an attention), 5 per element of
    a LayerNorm with weights, 4 per output element of a bilinear resize; elementwise
    operations (activations, additions, the L2 normalisations, the sigmoid) count nothing.
    """
    # image encoder: width W, patch p, n = (64/16)^2 patches, T prompt tokens, D output dim
    W, p, n, T, D, blocks, levels = 64, 16, 16, 5, 32, 12, 6
    L = 1 + T + n  # tokens in every block (deep prompts in blocks 1..11, shallow in block 0)
    encoder = (
        W * 3 * p * p * n  # patch embedding conv
        + 5 * (1 + n) * W  # ln_pre on class + patch tokens (before the prompts are inserted)
        + (1 + 11) * T * W * W  # prompt_proj: shallow prompts once, deep prompts of blocks 1..11
        + blocks * (2 * 5 * L * W  # ln_1, ln_2
                    + L * W * 3 * W  # packed q/k/v projection
                    + 2 * L * L * W  # q.k^T and attn.v, summed over heads
                    + L * W * W  # out_proj
                    + L * W * 4 * W + L * 4 * W * W)  # MLP
        + levels * (2 * 5 * n * W + n * W * D)  # prompt_norm, ln_layers[k], proj_layers[k] on patch tokens
        + 2 * 5 * (1 + n) * W + (1 + n) * W * D)  # prompt_norm, ln_post, proj of the last layer
    # head: C channels, K classes (all of them at test time), N = n memory tokens, S decoders
    # of 3 layers; the last layer of each decoder only computes its mask logits
    C, K, N, S = 32, 6, 16, 3
    full_layer = (K * C * C + 2 * N * C * C  # q on the queries, k and v on the memory
                  + 2 * K * N * C  # q.k^T and attn.v
                  + K * C * C  # proj
                  + 2 * 5 * K * C  # norm2, norm3
                  + K * C * 4 * C + K * 4 * C * C)  # FFN
    last_layer = K * C * C + N * C * C + K * N * C  # q, k, q.k^T (bmm)
    head = S * (K * 2 * C * C  # q_projs[j] on [global * text, text]
                + 2 * full_layer + last_layer)
    # (1, K, 4, 4) mask logits -> img_size 64 as (64, 4) @ (1, K, 4, 4) @ (4, 64), fvcore's
    # matmul count (the first product without its batch dimensions: 64 * 4 * 4)
    upsample = 64 * 4 * 4 + K * 64 * 4 * 64
    interpolation = 4 * K * 64 * 64  # fvcore's count of the same resize by F.interpolate
    encoder_attention = blocks * 2 * L * L * W
    return encoder + head + upsample, encoder_attention - interpolation + upsample


def test_get_flops_equals_a_count_by_hand(tiny_cfg):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import get_flops
    from cascade_clip.apis.measure import build_model_for_measurement, count_flops
    expected, not_comparable = flops_by_hand()
    flops, total, trainable = get_flops.main([tiny_cfg, '--shape', '64', '64', '--device', 'cpu'])
    assert flops == expected == 16056512
    model = build_model_for_measurement(Config.fromfile(tiny_cfg))
    counted, by_module = count_flops(model, (64, 64))
    assert counted == expected
    assert by_module['comparable'] == expected - not_comparable
    # parameters by hand (linear: in*out + out; LayerNorm: 2*width)
    block = lambda w: (3 * w * w + 3 * w) + (w * w + w) + 2 * 2 * w + (w * 4 * w + 4 * w) + (4 * w * w + w)  # noqa: E731
    prompts = 5 * 64 + 11 * 5 * 64 + (64 * 64 + 64) + 2 * 64  # shallow, deep, prompt_proj, prompt_norm
    image = (64 * 3 * 16 * 16 + 64 + 17 * 64 + 2 * 64 + 12 * block(64) + 2 * 64 + 64 * 32  # CLIP ViT
             + 6 * 2 * 64 + 6 * 64 * 32 + prompts)  # ln_layers, proj_layers, prompts
    text = 49408 * 32 + 77 * 32 + 2 * block(32) + 2 * 32 + 32 * 32  # CLIP text tower
    linear = 32 * 32 + 32
    used_layer = 4 * linear + (32 * 128 + 128) + (128 * 32 + 32) + 2 * 2 * 32  # q k v proj, FFN, norm2/3
    layer = used_layer + (3 * 32 * 32 + 3 * 32) + linear + 2 * 32  # + self_attn, norm1 (never used)
    q_projs, weights = 3 * (64 * 32 + 32), 3 + 3
    assert total == image + text + 3 * 3 * layer + q_projs + weights == 2442790
    # trained: the prompts, and in the head what the forward uses (each decoder's last layer
    # stops at its logits: q and k)
    assert trainable == prompts + q_projs + weights + 3 * (2 * used_layer + 2 * linear) == 96934


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
