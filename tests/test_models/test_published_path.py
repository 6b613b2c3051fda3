"""The fast path gives the published computation's outputs (same weights, eval mode)."""
import numpy as np
import torch

from tools import published_path as P
from tests.tiny import build, tiny_model_cfg


def test_fast_path_equals_published_path(tmp_path):
    emb = np.random.RandomState(0).randn(6, 32).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    path = str(tmp_path / 'e.npy')
    np.save(path, emb)
    torch.manual_seed(0)
    model = build(tiny_model_cfg(load_text_embedding=path))
    model.eval()
    img = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ours = model.encode_decode(img, None)
        ref = P.encode_decode(model, img, path)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # the training loss (dropout off to compare): same values
    model.backbone.prompt_dropout.p = 0.0
    for m in model.decode_head.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for blk in model.backbone.transformer.resblocks:
        blk.drop_path = torch.nn.Identity()
    for layer in (l for d in model.decode_head.cascade_decoders for l in d.layers):
        layer.multihead_attn.attn_drop = 0.0
    model.train()
    img = torch.randn(2, 3, 64, 64)  # training crops are img_size, as in the published recipe
    gt = torch.randint(0, 6, (2, 1, 64, 64))
    gt[:, :, :8] = 255
    out = model.train_step(dict(img=img, img_metas=[{}] * 2, gt_semantic_seg=gt), None)
    losses = model.forward_train(img, [{}] * 2, gt)
    ref_loss, ref_acc = P.train_loss(model, img, gt, path)
    torch.testing.assert_close(out['loss'], ref_loss, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(losses['decode.acc_seg'], ref_acc[0] if ref_acc.dim() else ref_acc, atol=1e-4, rtol=0)
