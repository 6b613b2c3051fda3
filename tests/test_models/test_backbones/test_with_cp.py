"""Activation checkpointing of the image encoder (``with_cp``): same gradients, less kept."""
import copy

import torch

import cascade_clip.models.backbones.clip_vit as clip_vit
from cascade_clip.models.backbones import CLIPVisionTransformer
from tests.tiny import build, tiny_model_cfg, train_loss


def meta():
    return dict(ori_shape=(64, 64, 3), img_shape=(64, 64, 3), pad_shape=(64, 64, 3), flip=False)


def saved_bytes(fn):
    """Bytes of the tensors autograd keeps for the backward pass while ``fn`` runs."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total[0]


def count_checkpoints(monkeypatch):
    calls = []
    real = clip_vit.cp.checkpoint

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(clip_vit.cp, 'checkpoint', counting)
    return calls


def grads_of(model, seed, img, gt):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same drop-path and dropout draws in both runs
    loss, kept = saved_bytes(lambda: train_loss(model, img, [meta()] * img.shape[0], gt))
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, kept


def test_with_cp_same_gradients_with_drop_path_and_dropout(monkeypatch):
    torch.manual_seed(0)
    cfg = tiny_model_cfg(backbone=dict(drop_path_rate=0.3))
    plain = build(cfg).train()
    ckpt = copy.deepcopy(plain)
    ckpt.backbone.with_cp = True
    assert build(tiny_model_cfg(backbone=dict(with_cp=True))).backbone.with_cp
    img = torch.randn(2, 3, 64, 64)
    gt = torch.randint(0, 6, (2, 1, 64, 64))
    g_ref, kept_ref = grads_of(plain, 3, img, gt)
    calls = count_checkpoints(monkeypatch)
    g_cp, kept_cp = grads_of(ckpt, 3, img, gt)
    assert len(calls) == 12 and all(c['use_reentrant'] is False for c in calls)
    assert all(c['preserve_rng_state'] for c in calls)
    # prompts of frozen blocks still get gradients (non-reentrant checkpoint)
    assert g_cp['backbone.deep_prompt_embeddings'].abs().sum() > 0
    largest = max(g.abs().max().item() for g in g_ref.values())
    for n, g in g_ref.items():
        assert (g_cp[n] - g).abs().max().item() <= 1e-5 * largest, n
    # dropout really acted: another seed gives other gradients
    g_other, _ = grads_of(plain, 4, img, gt)
    assert not torch.allclose(g_other['backbone.prompt_proj.weight'], g_ref['backbone.prompt_proj.weight'])
    assert kept_cp < 0.7 * kept_ref


def test_with_cp_fine_tuned_backbone_and_eval_mode(monkeypatch):
    torch.manual_seed(0)
    args = dict(input_resolution=64, patch_size=16, width=64, layers=4, heads=4, output_dim=32,
                drop_path_rate=0.5, out_indices=[1, 3], get_embeddings=True)
    plain = CLIPVisionTransformer(**args).train()
    ckpt = CLIPVisionTransformer(**args, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    img = torch.randn(2, 3, 64, 64)
    grads = []
    for m in (plain, ckpt):
        torch.manual_seed(5)
        out = m(img)
        (sum(x.pow(2).sum() for x in out.levels) + out.dense.pow(2).sum() + out.global_emb.sum()).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    largest = max(g.abs().max().item() for g in grads[0].values())
    for n, g in grads[0].items():
        assert (grads[1][n] - g).abs().max().item() <= 1e-5 * largest, n
    calls = count_checkpoints(monkeypatch)
    ckpt.eval()
    ckpt(img)
    ckpt.train()
    with torch.no_grad():
        ckpt(img)
    assert calls == []  # only in training with gradients
