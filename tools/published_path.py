"""The published code's forward path, re-implemented on this project's modules.

For same-machine comparisons (``tools/benchmark.py --reference``) and as the tests' reference:
the same weights go through the computation as the reference implementation organises it
(sequence-first blocks calling ``nn.MultiheadAttention``; level LayerNorms/projections over
all tokens; class embeddings read from the .npy file at every forward; per-head attention
with softmax and value products in every decoder layer, the last included; the score maps
resized to 512x512 in the head and again to the input; one-hot targets for the loss and top-k
accuracy). Eval mode (no dropout) gives the same outputs as the fast path.
"""
import numpy as np
import torch
import torch.nn.functional as F
from mmseg.models.losses import accuracy


def sigmoid_focal_loss(logits, targets, num_masks, alpha=0.25, gamma=2.0):
    """The published focal loss: logits, targets (M, P); mean over pixels, summed over the M
    masks, divided by ``num_masks``."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t)**gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def dice_loss(logits, targets, num_masks):
    """The published dice loss: 1 - (2·Σpt + 1) / (Σp + Σt + 1) per mask (M, P), summed, divided
    by ``num_masks``."""
    p = logits.sigmoid()
    return (1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)).sum() / num_masks


def label_to_onehot(label, num_classes, ignore_index=255):
    """(B, H, W) ids -> one-hot targets (B, K, H, W) float (ignored pixels all zero) and the
    (B, K) classes present in each image."""
    valid = label != ignore_index
    idx = torch.where(valid, label, torch.full_like(label, num_classes)).long()
    onehot = F.one_hot(idx, num_classes + 1)[..., :num_classes].permute(0, 3, 1, 2).float()
    return onehot, onehot.flatten(2).amax(-1) > 0


def _block(blk, x):
    """x: (L, B, C) sequence-first, as CLIP's ResidualAttentionBlock."""
    x = x + blk.drop_path(blk.attn(blk.ln_1(x), blk.ln_1(x), blk.ln_1(x), need_weights=False)[0])
    return x + blk.drop_path(blk.mlp(blk.ln_2(x)))


def backbone_forward(bb, img):
    x = bb.conv1(img)
    B, C, H, W = x.shape
    x = x.reshape(B, C, -1).permute(0, 2, 1)
    x = torch.cat([bb.class_embedding.to(x.dtype) + torch.zeros(B, 1, C, dtype=x.dtype), x], dim=1)
    pos = bb.positional_embedding.to(x.dtype)
    cls_pos = pos[0, :] + bb.class_embedding.to(x.dtype)
    s = bb.spatial_size
    spatial = F.interpolate(pos[1:, ].reshape(1, s, s, C).permute(0, 3, 1, 2), size=(H, W), mode='bilinear')
    spatial = spatial.reshape(1, C, H * W).permute(0, 2, 1)
    x = x + torch.cat([cls_pos.reshape(1, 1, C), spatial], dim=1)
    x = bb.ln_pre(x)
    T = bb.num_tokens
    x = torch.cat((x[:, :1, :], bb.prompt_dropout(bb.prompt_proj(bb.prompt_embeddings).expand(B, -1, -1)),
                   x[:, 1:, :]), dim=1)
    x = x.permute(1, 0, 2)
    features = []
    for i, blk in enumerate(bb.transformer.resblocks):
        if 1 <= i <= bb.total_d_layer:
            deep = bb.prompt_dropout(bb.prompt_proj(bb.deep_prompt_embeddings[i - 1]).expand(B, -1, -1)).permute(1, 0, 2)
            x = torch.cat((x[:1, :, :], deep, x[(1 + T):, :, :]), dim=0)
        elif bb.total_d_layer > 0 and i > bb.total_d_layer:
            x = torch.cat((x[:1, :, :], x[-(H * W):, :, :]), dim=0)
        x = _block(blk, x)
        if i in bb.out_indices:
            k = bb.out_indices.index(i)
            f = bb.prompt_norm(x).permute(1, 0, 2)
            f = bb.ln_layers[k](f) @ bb.proj_layers[k]
            f = f[:, -(H * W):, :].permute(0, 2, 1).reshape(B, -1, H, W)
            features.append(f / f.norm(dim=1, keepdim=True))
    x = bb.prompt_norm(x).permute(1, 0, 2)
    x = bb.ln_post(x) @ bb.proj
    g = x[:, 0]
    dense = x[:, -(H * W):].reshape(B, H, W, -1).permute(0, 3, 1, 2)
    features.append(dense / dense.norm(dim=1, keepdim=True))
    return [tuple(features), g / g.norm(dim=1, keepdim=True)]


def _attention(attn, xq, xk, xv):
    B, Nq, C = xq.size()
    h = attn.num_heads
    q = attn.q(xq).reshape(B, Nq, h, C // h).permute(0, 2, 1, 3)
    k = attn.k(xk).reshape(B, xk.size(1), h, C // h).permute(0, 2, 1, 3)
    v = attn.v(xv).reshape(B, xv.size(1), h, C // h).permute(0, 2, 1, 3)
    a = (q @ k.transpose(-2, -1)) * attn.scale
    saved = a.clone()
    a = F.dropout(a.softmax(dim=-1), attn.attn_drop, attn.training)
    x = (a @ v).transpose(1, 2).reshape(B, Nq, C)
    return attn.proj(x).transpose(0, 1), saved.sum(dim=1) / h


def _layer(layer, tgt, memory):
    """tgt (K, B, C), memory (N, B, C) -> (tgt, head-averaged logits (B, K, N))."""
    tgt2, attn = _attention(layer.multihead_attn, tgt.transpose(0, 1), memory.transpose(0, 1), memory.transpose(0, 1))
    tgt = layer.norm2(tgt + layer.dropout2(tgt2))
    tgt2 = layer.linear2(layer.dropout(F.relu(layer.linear1(tgt))))
    return layer.norm3(tgt + layer.dropout3(tgt2)), attn


def head_forward(head, inputs):
    (maps, g), text = inputs
    B = g.shape[0]
    x = [m.flatten(2).transpose(1, 2) for m in maps]
    K = text.shape[0]
    q1 = torch.einsum('bd,bcd->bcd', g, text.expand(B, -1, -1))
    q_in = torch.cat((q1, text.expand(B, -1, -1)), dim=-1)
    masks = []
    for j, stage in enumerate(head.cascade_stages):
        name = head._weight_names[j]
        mem = x[stage[0]] if name is None else sum(getattr(head, name)[k] * x[i] for k, i in enumerate(stage))
        q = head.q_projs[j](q_in).transpose(0, 1)
        for layer in head.cascade_decoders[j].layers:
            q, attn = _layer(layer, q, mem.transpose(0, 1))
        h, w = maps[-1].shape[-2:]
        masks.append(attn.reshape(B, K, h, w))
    pred = F.interpolate(sum(masks), size=(head.image_size, head.image_size), mode='bilinear', align_corners=False)
    return pred


def encode_decode(model, img, embedding_file):
    x = backbone_forward(model.backbone, img)
    text = torch.from_numpy(np.load(embedding_file)).to(img.device)  # re-read every forward
    pred = head_forward(model.decode_head, [x, text]).sigmoid()
    if not model.decode_head.self_training:
        seen = list(model.vocabulary.seen)
        pred[:, seen] = pred[:, seen] - model.decode_head.calibration
    return F.interpolate(pred, size=img.shape[2:], mode='bilinear', align_corners=False)


def train_loss(model, img, gt, embedding_file):
    """The published training loss of one batch (inductive): one-hot targets, top-k accuracy."""
    x = backbone_forward(model.backbone, img)
    text = torch.from_numpy(np.load(embedding_file)).to(img.device)[model.base_class]
    pred = head_forward(model.decode_head, [x, text])
    label = model.remap_labels(gt).squeeze(1)
    K = pred.shape[1]
    onehot, present = label_to_onehot(label, K)
    num_masks = max(int(present.sum()), 1)  # one process
    logits, targets = pred.flatten(2), onehot.flatten(2)
    loss_fn = model.decode_head.loss_decode
    focal = sigmoid_focal_loss(logits.flatten(0, 1), targets.flatten(0, 1), num_masks)
    dice = dice_loss(logits[present], targets[present], num_masks)
    acc = accuracy(pred, label, ignore_index=255)
    return focal * loss_fn.mask_weight + dice * loss_fn.dice_weight, acc
