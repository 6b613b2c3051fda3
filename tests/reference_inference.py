"""The test-time computation as it was before class-chunked inference, kept as the reference.

All K classes at once at full resolution: each crop's scores upsampled to (K, img_size,
img_size), the (B, K, H, W) sliding-window canvas, its resize to the original size, and for
augmentations the softmax of each of them (MMSeg's ``aug_test``). The tests compare
``CascadeCLIP``'s chunked path with it bit for bit, and ``tools/benchmark.py --sweep`` measures
its time and memory side by side.
"""
from typing import List

import torch
import torch.nn.functional as F
from mmseg.ops import resize

from cascade_clip.models.decode_heads.cascade_head import HeadInputs


def encode_decode(model, img) -> torch.Tensor:
    """Calibrated scores (B, K, H, W) of one input, all classes at once."""
    text = model.class_embeddings()
    H, W = img.shape[2:]
    patch = getattr(model.backbone, 'patch_size', 1)
    pad_h, pad_w = -H % patch, -W % patch
    if pad_h or pad_w:
        img = F.pad(img, (0, pad_w, 0, pad_h))
    with model.autocast(img.device.type):
        inputs = HeadInputs(model.extract_feat(img), text, model.vocabulary.seen)
        head = model.decode_head
        out = head.semantic_inference(head.forward(inputs), inputs.seen)
    out = out.float()
    if out.shape[2:] != img.shape[2:]:
        out = resize(out, size=img.shape[2:], mode='bilinear', align_corners=model.align_corners)
    return out[:, :, :H, :W]


def slide_inference(model, img, img_meta, rescale) -> torch.Tensor:
    cfg = model.test_cfg
    h_stride, w_stride = cfg.stride
    h_crop, w_crop = cfg.crop_size
    batch_size, _, h_img, w_img = img.size()
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    boxes = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * h_stride + h_crop, h_img)
            x2 = min(w_idx * w_stride + w_crop, w_img)
            boxes.append((max(y2 - h_crop, 0), max(x2 - w_crop, 0), y2, x2))
    preds = img.new_zeros((batch_size, model.num_classes, h_img, w_img), dtype=torch.float32)
    count = img.new_zeros((batch_size, 1, h_img, w_img), dtype=torch.float32)
    chunk = max(1, int(cfg.get('crop_batch', 4)) // batch_size)
    for i in range(0, len(boxes), chunk):
        group = boxes[i:i + chunk]
        crops = torch.cat([img[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in group])
        logits = encode_decode(model, crops).float()
        for j, (y1, x1, y2, x2) in enumerate(group):
            preds[:, :, y1:y2, x1:x2] += logits[j * batch_size:(j + 1) * batch_size]
            count[:, :, y1:y2, x1:x2] += 1
    preds = preds / count
    if rescale:
        resize_shape = img_meta[0]['img_shape'][:2]
        preds = preds[:, :, :resize_shape[0], :resize_shape[1]]
        preds = resize(preds, size=img_meta[0]['ori_shape'][:2], mode='bilinear',
                       align_corners=model.align_corners, warning=False)
    return preds


def whole_inference(model, img, img_meta, rescale) -> torch.Tensor:
    seg_logit = encode_decode(model, img)
    if rescale:
        resize_shape = img_meta[0]['img_shape'][:2]
        seg_logit = seg_logit[:, :, :resize_shape[0], :resize_shape[1]]
        seg_logit = resize(seg_logit, size=img_meta[0]['ori_shape'][:2], mode='bilinear',
                           align_corners=model.align_corners, warning=False)
    return seg_logit


def predict_scores(model, img, img_meta, rescale=True) -> torch.Tensor:
    """(B, K, H, W) calibrated scores, flip undone."""
    assert model.test_cfg.mode in ['slide', 'whole']
    if model.test_cfg.mode == 'slide':
        scores = slide_inference(model, img, img_meta, rescale)
    else:
        scores = whole_inference(model, img, img_meta, rescale)
    if img_meta[0].get('flip', False):
        direction = img_meta[0]['flip_direction']
        scores = scores.flip(dims=(3, ) if direction == 'horizontal' else (2, ))
    return scores


def simple_test(model, img, img_meta, rescale=True) -> torch.Tensor:
    """Labels (B, H, W): arg-max of the full scores."""
    return predict_scores(model, img, img_meta, rescale).argmax(dim=1)


def aug_test_probabilities(model, imgs, img_metas) -> torch.Tensor:
    """MMSeg's ``aug_test`` average of the softmax over the augmentations (B, K, H, W)."""
    seg_logit = F.softmax(predict_scores(model, imgs[0], img_metas[0], True), dim=1)
    for i in range(1, len(imgs)):
        seg_logit += F.softmax(predict_scores(model, imgs[i], img_metas[i], True), dim=1)
    seg_logit /= len(imgs)
    return seg_logit


def aug_test(model, imgs, img_metas) -> torch.Tensor:
    """Labels (B, H, W) of MMSeg's ``aug_test``."""
    return aug_test_probabilities(model, imgs, img_metas).argmax(dim=1)


def labels_list(labels: torch.Tensor) -> List:
    return list(labels.cpu().numpy())
