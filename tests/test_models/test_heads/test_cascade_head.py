import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.models import build_head

import cascade_clip  # noqa: F401
from cascade_clip.models.backbones import VisualFeatures
from cascade_clip.models.decode_heads.cascade_head import HeadInputs, gaussian_weights


def head_cfg(**kw):
    cfg = dict(type='ATMSingleHeadSeg', img_size=16, in_channels=32, seen_idx=[0, 1, 3],
               all_idx=[0, 1, 2, 3], channels=32, num_classes=3, num_layers=3, num_heads=4,
               embed_dims=32, loss_decode=dict(type='SegLossPlus', num_classes=3))
    cfg.update(kw)
    return cfg


def ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'])


def lin(x, sd, name):
    return x @ sd[name + '.weight'].t() + sd[name + '.bias']


def reference_head(sd, maps, g, text, stages, heads, layers, img_size):
    """The published head with explicit per-head softmax attention (eval mode)."""
    B, C = g.shape
    K = text.shape[0]
    q_in = torch.cat([g[:, None] * text[None], text[None].expand(B, -1, -1)], -1)
    total = 0
    n_multi = 0
    d = C // heads
    for j, stage in enumerate(stages):
        if len(stage) > 1:
            n_multi += 1
            w = sd[f'weights_s{n_multi}']
            mem = sum(w[k] * maps[i] for k, i in enumerate(stage))
        else:
            mem = maps[stage[0]]
        h, wd = mem.shape[-2:]
        mem = mem.flatten(2).transpose(1, 2)
        q = lin(q_in, sd, f'q_projs.{j}')
        for l in range(layers):
            p = f'cascade_decoders.{j}.layers.{l}.'
            Q = lin(q, sd, p + 'multihead_attn.q').reshape(B, K, heads, d).transpose(1, 2)
            Kt = lin(mem, sd, p + 'multihead_attn.k').reshape(B, -1, heads, d).transpose(1, 2)
            V = lin(mem, sd, p + 'multihead_attn.v').reshape(B, -1, heads, d).transpose(1, 2)
            a = Q @ Kt.transpose(-1, -2) * d**-0.5
            if l == layers - 1:
                total = total + a.sum(1) / heads
                break
            o = (a.softmax(-1) @ V).transpose(1, 2).reshape(B, K, C)
            o = lin(o, sd, p + 'multihead_attn.proj')
            q = ln(q + o, sd, p + 'norm2')
            f = lin(torch.relu(lin(q, sd, p + 'linear1')), sd, p + 'linear2')
            q = ln(q + f, sd, p + 'norm3')
    masks = total.reshape(B, K, h, wd)
    return F.interpolate(masks, size=(img_size, img_size), mode='bilinear', align_corners=False)


def inputs(B=2, C=32, h=4, w=4, K=4, n_maps=7, seed=0):
    torch.manual_seed(seed)
    maps = tuple(F.normalize(torch.randn(B, C, h, w), dim=1) for _ in range(n_maps))
    g = F.normalize(torch.randn(B, C), dim=1)
    text = F.normalize(torch.randn(K, C), dim=1)
    return maps, g, text


def head_inputs(maps, g, text, seen=(0, 1, 3)):
    """HeadInputs from a tuple of maps whose last one is the last layer's (dense) map."""
    return HeadInputs(VisualFeatures(tuple(maps[:-1]), maps[-1], g), text, seen)


def test_gaussian_weights():
    torch.testing.assert_close(gaussian_weights(3), torch.tensor([math.exp(-2), math.exp(-0.5), 1.0]))


def test_head_forward_matches_reference_and_names():
    head = build_head(head_cfg())
    head.init_weights()
    with torch.no_grad():  # make the aggregation weights non-trivial
        head.weights_s1.copy_(torch.tensor([0.3, -0.2, 1.1]))
    head.eval()
    maps, g, text = inputs()
    with torch.no_grad():
        out = head(head_inputs(maps, g, text))
        ref = reference_head(head.state_dict(), maps, g, text, ((0, 1, 2), (3, 4, 5), (6, )), 4, 3, 16)
    assert out.shape == (2, 4, 16, 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    keys = set(head.state_dict())
    assert 'weights_s1' in keys and 'weights_s2' in keys and 'weights_s3' not in keys
    assert 'cascade_decoders.2.layers.2.self_attn.in_proj_weight' in keys
    assert 'q_projs.2.weight' in keys and 'loss_decode.criterion.empty_weight' in keys
    assert not any(k.startswith('conv_seg') for k in keys)
    assert head.q_projs[0].weight.shape == (32, 64)


def test_initialisation():
    head = build_head(head_cfg())
    head.init_weights()
    torch.testing.assert_close(head.weights_s1.data, gaussian_weights(3))
    torch.testing.assert_close(head.weights_s2.data, gaussian_weights(3))
    w = head.cascade_decoders[0].layers[0].linear1.weight
    # trunc_normal std 0.02 (truncated at ±2 absolute, as timm/mmcv do)
    assert 0.018 < w.std() < 0.022 and abs(w.mean()) < 0.002
    assert head.cascade_decoders[0].layers[0].linear1.bias.abs().max() == 0
    n = head.cascade_decoders[1].layers[1].norm2
    assert torch.all(n.weight == 1) and torch.all(n.bias == 0)


def test_calibration_inductive_and_transductive():
    head = build_head(head_cfg())
    head.init_weights()
    head.eval()
    maps, g, text = inputs()
    with torch.no_grad():
        logits = head(head_inputs(maps, g, text))
        scores = head.forward_test(head_inputs(maps, g, text), None, None)
        head.self_training = True
        scores_st = head.forward_test(head_inputs(maps, g, text), None, None)
    expected = logits.sigmoid()
    torch.testing.assert_close(scores_st, expected)
    expected[:, [0, 1, 3]] -= 0.1
    torch.testing.assert_close(scores, expected)


def test_one_stage_zegclip_style_and_custom_layout():
    head = build_head(head_cfg(cascade_stages=[[-1]]))
    head.init_weights()
    head.eval()
    assert len(head.cascade_decoders) == 1 and not hasattr(head, 'weights_s1')
    maps, g, text = inputs(n_maps=1)
    with torch.no_grad():
        out = head(head_inputs(maps, g, text))
        ref = reference_head(head.state_dict(), maps, g, text, ((0, ), ), 4, 3, 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # two stages of two levels each, sigma 2 (the dense map, last, is not read)
    head = build_head(head_cfg(cascade_stages=[[0, 1], [2, 3]], aggregation_sigma=2.0, num_layers=2))
    head.init_weights()
    head.eval()
    torch.testing.assert_close(head.weights_s2.data, torch.tensor([math.exp(-0.125), 1.0]))
    maps, g, text = inputs(n_maps=5, h=3, w=5)
    with torch.no_grad():
        out = head(head_inputs(maps, g, text))
        ref = reference_head(head.state_dict(), maps, g, text, ((0, 1), (2, 3)), 4, 2, 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r'level 4 was asked for, but the image encoder returns 4 levels'):
        build_head(head_cfg())(head_inputs(maps, g, text))


def test_unused_parameters_are_frozen_and_the_rest_get_gradients():
    head = build_head(head_cfg())
    head.init_weights()
    head.train()
    maps, g, text = inputs()
    label = torch.randint(0, 3, (2, 1, 16, 16))
    losses = head.forward_train(head_inputs(maps, g, text[:3], seen=(0, 1, 2)), None, label, None)
    assert set(losses) == {'loss_mask', 'loss_dice', 'acc_seg'}
    (losses['loss_mask'].value + losses['loss_dice'].value).backward()
    frozen = {n for n, p in head.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    # 3 decoders x 3 layers: self_attn (4) + norm1 (2) per layer, plus the last layer's
    # v, proj, linear1, linear2, norm2, norm3 (12) per decoder = 54 + 36 = 90 frozen tensors
    assert len(frozen) == 90
    assert all(('self_attn' in n or 'norm1' in n or '.layers.2.' in n) for n in frozen)
    for n, p in head.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
            assert p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n
    assert len(trainable) == 206 - 90


def test_pseudo_labels_take_the_best_unseen_class():
    head = build_head(head_cfg())
    pred = torch.full((1, 4, 2, 2), -5.0)
    pred[0, 0] = 10.0  # a seen class wins everywhere, but seen classes are excluded
    pred[0, 1, 0, 0] = 3.0
    pred[0, 2, 0, 1] = 4.0
    pred[0, 2, 1, 0] = 1.0
    pred[0, 1, 1, 0] = 0.5
    gt = torch.tensor([[[[-1, -1], [-1, 3]]]])
    out = head.pseudo_label(pred, gt, seen=[0, 3])  # unseen: 1, 2
    assert out.tolist() == [[[[1, 2], [2, 3]]]]
    assert gt.tolist() == [[[[-1, -1], [-1, 3]]]]  # input untouched


def test_each_aggregation_mode_owns_its_parameter_names():
    """Modes combine a stage's maps as they say, and a checkpoint of one mode fails strict
    loading in another (its weights have other names, or there are none)."""
    from cascade_clip.models.decode_heads.cascade_head import AGGREGATIONS
    from cascade_clip.utils.checkpoint import CheckpointError, load_state_dict_checked
    prefixes = [p for p, _ in AGGREGATIONS.values() if p is not None]
    assert len(set(prefixes)) == len(prefixes)
    heads = {}
    for mode in AGGREGATIONS:
        torch.manual_seed(0)
        head = build_head(head_cfg(aggregation=mode))
        head.init_weights()
        heads[mode] = head.eval()
    assert sorted(n for n, _ in heads['gaussian'].named_parameters() if 'weights' in n) == ['weights_s1', 'weights_s2']
    torch.testing.assert_close(heads['learned'].learned_weights_s2.data, torch.full((3, ), 1 / 3))
    assert not any('weights' in n for n, _ in heads['sum'].named_parameters())
    # 'sum' is the 'gaussian' head with unit weights (same decoders: same seed)
    maps, g, text = inputs()
    with torch.no_grad():
        heads['gaussian'].weights_s1.fill_(1.0)
        heads['gaussian'].weights_s2.fill_(1.0)
        torch.testing.assert_close(heads['sum'](head_inputs(maps, g, text)),
                                   heads['gaussian'](head_inputs(maps, g, text)))
    for a in AGGREGATIONS:
        for b in AGGREGATIONS:
            if a != b:
                with pytest.raises(CheckpointError, match='does not match'):
                    load_state_dict_checked(heads[b], heads[a].state_dict(), f'{a}.pth')
    with pytest.raises(ValueError, match=r"aggregation must be one of \['gaussian', 'learned', 'sum'\], got 'mean'"):
        build_head(head_cfg(aggregation='mean'))


def test_a_list_of_loss_terms_and_a_loss_that_is_not_one():
    """loss_decode as a list (MMSeg's form): every term is computed and reported; MMSeg's pixel
    losses, which take (B, K, H, W) class logits and return a mean, are refused when built."""
    from mmseg.models.builder import LOSSES

    from cascade_clip.models.losses import LossSum, SumLoss

    @LOSSES.register_module(force=True)
    class CountingTestLoss(SumLoss):

        def forward(self, pred_masks, label, ignore_index=255):
            n = int((label != ignore_index).sum())
            return {'loss_count': LossSum(pred_masks.sum() * 0 + n, n, 'pixels')}

    head = build_head(head_cfg(loss_decode=[dict(type='SegLossPlus', num_classes=3),
                                            dict(type='CountingTestLoss')]))
    maps, g, text = inputs()
    label = torch.randint(0, 3, (2, 1, 16, 16))
    label[0, :, :4] = 255
    losses = head.forward_train(head_inputs(maps, g, text[:3], seen=(0, 1, 2)), None, label, None)
    assert set(losses) == {'loss_mask', 'loss_dice', 'loss_count', 'acc_seg'}
    assert losses['loss_count'].count == 2 * 256 - 64 and losses['loss_mask'].unit == 'masks'
    for bad, where in ((dict(type='CrossEntropyLoss'), 'loss_decode'),
                       ([dict(type='SegLossPlus', num_classes=3), dict(type='CrossEntropyLoss')],
                        r'loss_decode\[1\]')):
        with pytest.raises(ValueError, match=rf'decode_head.{where}: CrossEntropyLoss is not a loss of '
                           r'the cascade head, whose terms return a sum and its count'):
            build_head(head_cfg(loss_decode=bad))
    with pytest.raises(ValueError, match="two terms of decode_head.loss_decode are named 'loss_count'"):
        build_head(head_cfg(loss_decode=[dict(type='CountingTestLoss'), dict(type='CountingTestLoss')])
                   ).forward_train(head_inputs(maps, g, text[:3], seen=(0, 1, 2)), None, label, None)


@pytest.mark.parametrize('size_in,size_out', [((4, 4), (16, 16)), ((32, 32), (512, 512)),
                                              ((5, 7), (12, 30)), ((3, 3), (3, 3))])
def test_chunk_scores_resize_is_the_bilinear_resize(size_in, size_out):
    """The test path's resize (two products with bilinear weight matrices) equals F.interpolate
    to rounding, and chunk_scores equals forward_test's scores of the same classes."""
    from cascade_clip.models.decode_heads.cascade_head import bilinear_matrix
    x = torch.randn(2, 3, *size_in, dtype=torch.float64)
    rows, cols = (bilinear_matrix(a, b, dtype=torch.float64) for a, b in zip(size_in, size_out))
    ref = F.interpolate(x, size=size_out, mode='bilinear', align_corners=False)
    torch.testing.assert_close(rows @ x @ cols.t(), ref, rtol=0, atol=1e-12)
    head = build_head(head_cfg(img_size=size_out[0]))
    head.init_weights()
    head.eval()
    maps, g, text = inputs(h=size_in[0], w=size_in[0])
    with torch.no_grad():
        logits = head(head_inputs(maps, g, text), upsample=False)
        full = head.forward_test(head_inputs(maps, g, text), None, None)
        torch.testing.assert_close(head.chunk_scores(logits, 1, 3, seen=(0, 1, 3)), full[:, 1:3],
                                   rtol=0, atol=1e-6)
