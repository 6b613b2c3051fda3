"""The focal + dice loss (sums and mask count) against hand-computed values and the published
one-hot computation (tools/published_path.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from cascade_clip.models.decode_heads.cascade_head import upsampled_argmax
from cascade_clip.models.losses import LossSum, SegLossPlus, focal_dice_sums
from tools.published_path import dice_loss, label_to_onehot, sigmoid_focal_loss


def test_published_focal_and_dice_by_hand():
    # one mask of two pixels: logit 0 (p = .5) with target 1, logit 2 with target 0
    p2 = 1 / (1 + math.exp(-2))
    want = (0.25 * math.log(2) * 0.5**2 + 0.75 * -math.log(1 - p2) * p2**2) / 2 / 2
    got = sigmoid_focal_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]]), num_masks=2.0)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # p = .5 everywhere: 1 - (2·1 + 1) / (2 + 2 + 1)
    assert dice_loss(torch.zeros(1, 4), torch.tensor([[1.0, 1, 0, 0]]), 1.0).item() == pytest.approx(0.4)


def test_sums_by_hand_and_the_mask_count():
    # 1 image, 2 classes, 2 pixels: class 0 at pixel 0, pixel 1 ignored; all logits 0 (p = .5)
    logits = torch.zeros(1, 2, 1, 2)
    label = torch.tensor([[[0, 255]]])
    focal, dice, n = focal_dice_sums(logits, label)
    # per pixel: target 1 -> .25·log2·.25; target 0 -> .75·log2·.25; mask 0: (t=1, t=0), mask 1: (0, 0)
    pos, neg = 0.25 * math.log(2) * 0.25, 0.75 * math.log(2) * 0.25
    assert focal.item() == pytest.approx((pos + neg) / 2 + (neg + neg) / 2, rel=1e-6)
    assert dice.item() == pytest.approx(1 - (2 * 0.5 + 1) / (1.0 + 1 + 1), rel=1e-6)  # mask 0 only
    assert n == 1


def test_mask_count_by_hand():
    label = torch.tensor([[[0, 2], [255, 2]], [[255, 255], [1, 1]], [[255, 255], [255, 255]]])
    assert focal_dice_sums(torch.zeros(3, 3, 2, 2), label)[2] == 3  # {0, 2}, {1}, nothing


def random_case(seed, B=3, K=7, low=(5, 6), size=(11, 13), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(B, K, *low, generator=g, dtype=dtype)).requires_grad_()
    label = torch.randint(0, K, (B, *size), generator=g)
    label[0, :4] = 255
    label[1][label[1] == 3] = 255
    if B > 2:
        label[2, :, 5:] = 255
    return logits, label


def published(logits, label, alpha=0.25, gamma=2.0):
    """Upsampled logits, one-hot targets and the published functions; unnormalised sums."""
    up = F.interpolate(logits, size=label.shape[-2:], mode='bilinear', align_corners=False)
    onehot, present = label_to_onehot(label, logits.shape[1])
    onehot = onehot.to(up.dtype)
    focal = sigmoid_focal_loss(up.flatten(2).flatten(0, 1), onehot.flatten(2).flatten(0, 1), 1.0, alpha, gamma)
    dice = dice_loss(up.flatten(2)[present], onehot.flatten(2)[present], 1.0)
    return focal, dice, int(present.sum())


@pytest.mark.parametrize('chunk', [1, 3, 16])
@pytest.mark.parametrize('alpha,gamma', [(0.25, 2.0), (0.5, 1.5), (-1, 2.0)])
def test_sums_equal_the_published_loss_values_and_gradients(chunk, alpha, gamma):
    logits, label = random_case(0)
    focal, dice, n = focal_dice_sums(logits, label, alpha, gamma, class_chunk=chunk)
    ref_f, ref_d, ref_n = published(logits, label, alpha, gamma)
    assert n == ref_n
    torch.testing.assert_close(focal, ref_f, rtol=1e-10, atol=0)
    torch.testing.assert_close(dice, ref_d, rtol=1e-10, atol=0)
    g = torch.autograd.grad(3 * focal + 0.5 * dice, logits)[0]
    g_ref = torch.autograd.grad(3 * ref_f + 0.5 * ref_d, logits)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)


def test_backward_keeps_no_full_resolution_tensor():
    logits, label = random_case(2, B=2, K=20, low=(4, 4), size=(64, 64), dtype=torch.float32)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
        focal, dice, _ = focal_dice_sums(logits, label, class_chunk=4)
    # the checkpointed chunks keep their inputs: low-resolution logits and the label map,
    # nothing of the size of a chunk's (2, 4, 64, 64) upsampled logits
    assert max(kept) < 2 * 4 * 64 * 64
    (focal + dice).backward()
    ref_f, ref_d, _ = published(logits.detach().double().requires_grad_(), label)
    torch.testing.assert_close(focal.double(), ref_f, rtol=1e-5, atol=0)


def test_seg_loss_plus_terms_and_weights():
    logits, label = random_case(3, dtype=torch.float64)
    out = SegLossPlus(num_classes=7, mask_weight=100.0, dice_weight=2.0, loss_weight=0.5,
                      class_chunk=3)(logits, label)
    ref_f, ref_d, n = published(logits, label)
    assert set(out) == {'loss_mask', 'loss_dice'}
    assert all(isinstance(t, LossSum) and t.unit == 'masks' and t.count == n for t in out.values())
    torch.testing.assert_close(out['loss_mask'].value, ref_f * 50, rtol=1e-10, atol=0)
    torch.testing.assert_close(out['loss_dice'].value, ref_d * 1.0, rtol=1e-10, atol=0)


def test_published_checkpoint_buffer():
    assert SegLossPlus(num_classes=4).criterion.empty_weight.tolist() == pytest.approx([1, 1, 1, 1, 0.1])


def test_upsampled_argmax_equals_full_argmax():
    logits, _ = random_case(4, dtype=torch.float32)
    up = F.interpolate(logits.detach(), size=(11, 13), mode='bilinear', align_corners=False)
    assert torch.equal(upsampled_argmax(logits.detach(), (11, 13), chunk=3), up.argmax(1))
