"""The lean focal + dice loss against the one-hot reference functions."""
import pytest
import torch
import torch.nn.functional as F

from cascade_clip.models.decode_heads.cascade_head import chunked_upsampled_argmax
from cascade_clip.models.losses import (SegLossPlus, count_masks, dice_loss, label_to_onehot,
                                        lean_focal_and_dice, sigmoid_focal_loss)


def reference(low, label, num_masks, alpha=0.25, gamma=2.0):
    """Upsample, one-hot targets, the two reference functions (masks flattened)."""
    up = F.interpolate(low, size=label.shape[-2:], mode='bilinear', align_corners=False)
    onehot, present = label_to_onehot(label, low.shape[1])
    onehot = onehot.to(up.dtype)
    focal = sigmoid_focal_loss(up.flatten(2).flatten(0, 1), onehot.flatten(2).flatten(0, 1),
                               num_masks, alpha, gamma)
    dice = dice_loss(up.flatten(2)[present], onehot.flatten(2)[present], num_masks)
    return focal, dice


def random_case(seed, B=3, K=7, low=(5, 6), size=(11, 13), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(B, K, *low, generator=g, dtype=dtype)).requires_grad_()
    label = torch.randint(0, K, (B, *size), generator=g)
    label[0, :4] = 255
    label[1][label[1] == 3] = 255
    if B > 2:
        label[2, :, 5:] = 255
    return logits, label


@pytest.mark.parametrize('chunk', [1, 3, 16])
@pytest.mark.parametrize('alpha,gamma', [(0.25, 2.0), (0.5, 1.5), (-1, 2.0)])
def test_lean_loss_equals_reference_values_and_gradients(chunk, alpha, gamma):
    logits, label = random_case(0)
    onehot, present = label_to_onehot(label, 7)
    n = float(present.sum())
    focal, dice = lean_focal_and_dice(logits.double(), label, None, alpha, gamma, class_chunk=chunk)
    ref_f, ref_d = reference(logits, label, n, alpha, gamma)
    torch.testing.assert_close(focal.double(), ref_f, rtol=1e-6, atol=0)
    torch.testing.assert_close(dice.double(), ref_d, rtol=1e-6, atol=0)
    g = torch.autograd.grad(3 * focal + 0.5 * dice, logits)[0]
    g_ref = torch.autograd.grad(3 * ref_f + 0.5 * ref_d, logits)[0]
    assert (g - g_ref).abs().max() <= 1e-6 * g_ref.abs().max()


def test_lean_loss_float32_same_size_and_num_masks_override():
    logits, label = random_case(1, low=(11, 13), dtype=torch.float32)
    focal, dice = lean_focal_and_dice(logits, label, num_masks=5.0, class_chunk=2)
    ref_f, ref_d = reference(logits, label, 5.0)
    torch.testing.assert_close(focal, ref_f, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dice, ref_d, rtol=1e-5, atol=1e-7)
    g = torch.autograd.grad(focal + dice, logits)[0]
    g_ref = torch.autograd.grad(ref_f + ref_d, logits)[0]
    assert (g - g_ref).abs().max() <= 1e-5 * g_ref.abs().max()


def test_lean_loss_keeps_only_low_resolution_logits_for_backward():
    logits, label = random_case(2, B=2, K=20, low=(4, 4), size=(64, 64), dtype=torch.float32)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        focal, dice = lean_focal_and_dice(logits, label, class_chunk=4)
    # two gradients of the low-resolution logits' size, far less than one (2, 20, 64, 64) tensor
    assert sum(kept) <= 2 * logits.numel() * 4
    (focal + dice).backward()
    assert torch.isfinite(logits.grad).all()
    with torch.no_grad():  # no gradient needed: values only
        f2, d2 = lean_focal_and_dice(logits, label, class_chunk=4)
    torch.testing.assert_close(f2, focal.detach())
    torch.testing.assert_close(d2, dice.detach())


def test_seg_loss_plus_low_resolution_equals_upsampled_input():
    logits, label = random_case(3, dtype=torch.float32)
    loss = SegLossPlus(num_classes=7, class_chunk=3)
    out_low = loss(logits, label)
    up = F.interpolate(logits.detach(), size=label.shape[-2:], mode='bilinear',
                       align_corners=False).requires_grad_()
    out_up = loss(up, label)
    for k in ('loss_mask', 'loss_dice'):
        torch.testing.assert_close(out_low[k], out_up[k], rtol=1e-5, atol=1e-7)
    n = float(label_to_onehot(label, 7)[1].sum())
    ref_f, ref_d = reference(logits, label, n)
    torch.testing.assert_close(out_low['loss_mask'], 100 * ref_f, rtol=1e-5, atol=1e-6)


def test_full_resolution_switch_equals_reference_and_keeps_full_size_tensors():
    """SegLossPlus(full_resolution=True), the published computation, against the reference
    (values and gradients); unlike the lean path it keeps (B, K, H, W) tensors."""
    logits, label = random_case(4, dtype=torch.float64)
    n = float(label_to_onehot(label, 7)[1].sum())
    ref_f, ref_d = reference(logits, label, n)
    ref_grad, = torch.autograd.grad(100 * ref_f + ref_d, logits)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
        out = SegLossPlus(num_classes=7, full_resolution=True)(logits, label)
    torch.testing.assert_close(out['loss_mask'], 100 * ref_f.float(), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out['loss_dice'], ref_d.float(), rtol=1e-6, atol=1e-8)
    grad, = torch.autograd.grad(out['loss_mask'] + out['loss_dice'], logits)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)
    assert max(kept) >= 3 * 7 * 11 * 13  # a full-resolution (B, K, H, W) tensor is kept


def test_count_masks_by_hand():
    label = torch.tensor([[[0, 2], [255, 2]], [[-1, 255], [1, 1]], [[255, 255], [255, 255]]])
    assert count_masks(label) == 3  # {0, 2} in image 0, {1} in image 1, nothing in image 2
    assert count_masks(label.unsqueeze(1)) == 3


def test_chunked_argmax_equals_full_argmax():
    logits, label = random_case(4, dtype=torch.float32)
    up = F.interpolate(logits.detach(), size=(11, 13), mode='bilinear', align_corners=False)
    got = chunked_upsampled_argmax(logits.detach(), (11, 13), chunk=3)
    assert torch.equal(got, up.argmax(1))
