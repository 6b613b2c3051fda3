import math

import pytest
import torch

from cascade_clip.models.losses import (SegLossPlus, dice_loss, label_to_onehot,
                                        reduce_num_masks, sigmoid_focal_loss)


def test_focal_single_pixel_by_hand():
    # one mask of two pixels: logit 0 (p=.5) with target 1, logit 2 with target 0
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    p2 = 1 / (1 + math.exp(-2))
    l1 = 0.25 * math.log(2) * 0.5**2
    l2 = 0.75 * -math.log(1 - p2) * p2**2
    got = sigmoid_focal_loss(logits, targets, num_masks=2.0)
    assert got.item() == pytest.approx((l1 + l2) / 2 / 2, rel=1e-6)


def test_dice_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # p = .5 everywhere: 1 - (2*1 + 1) / (2 + 2 + 1)
    assert dice_loss(logits, targets, 1.0).item() == pytest.approx(1 - 3 / 5)


def test_onehot_and_presence_ignore_pixels_are_zero():
    label = torch.tensor([[[0, 2], [255, 2]]])
    onehot, present = label_to_onehot(label, 3)
    assert onehot.shape == (1, 3, 2, 2)
    assert onehot[0, :, 1, 0].sum() == 0
    assert present.tolist() == [[True, False, True]]
    with pytest.raises(ValueError, match=r'\[3\]'):
        label_to_onehot(torch.tensor([[[3]]]), 3)


def reference_loss(pred, label, alpha=0.25, gamma=2.0):
    """Loop over images and present labels, as the published loss does."""
    B, K = pred.shape[:2]
    num_masks = 0
    focal = 0.0
    dice = 0.0
    for b in range(B):
        present = [int(c) for c in label[b].unique() if c != 255]
        num_masks += len(present)
        for k in range(K):
            t = (label[b] == k).float().flatten()
            x = pred[b, k].flatten()
            p = x.sigmoid()
            ce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
            pt = p * t + (1 - p) * (1 - t)
            a = alpha * t + (1 - alpha) * (1 - t)
            focal += (a * ce * (1 - pt)**gamma).mean()
            if k in present:
                dice += 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    num_masks = max(num_masks, 1)
    return focal / num_masks, dice / num_masks


def test_seg_loss_plus_against_reference():
    torch.manual_seed(0)
    pred = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    label = torch.randint(0, 4, (2, 8, 8))
    label[0, :3] = 255
    label[1][label[1] == 2] = 1
    loss = SegLossPlus(num_classes=4, mask_weight=100.0, dice_weight=2.0, loss_weight=0.5)
    out = loss(pred, label)
    f, d = reference_loss(pred, label)
    assert set(out) == {'loss_mask', 'loss_dice'}
    assert out['loss_mask'].item() == pytest.approx(f.item() * 100 * 0.5, rel=1e-6)
    assert out['loss_dice'].item() == pytest.approx(d.item() * 2 * 0.5, rel=1e-6)
    assert loss.criterion.empty_weight.tolist() == pytest.approx([1, 1, 1, 1, 0.1])


def test_seg_loss_resizes_predictions_to_label_size():
    torch.manual_seed(0)
    pred = torch.randn(1, 3, 4, 4)
    label = torch.randint(0, 3, (1, 8, 8))
    out = SegLossPlus(num_classes=3)(pred, label)
    up = torch.nn.functional.interpolate(pred, size=(8, 8), mode='bilinear', align_corners=False)
    f, d = reference_loss(up.double(), label)
    assert out['loss_mask'].item() == pytest.approx(100 * f.item(), rel=1e-5)
    assert out['loss_dice'].item() == pytest.approx(d.item(), rel=1e-5)


def test_all_ignored_batch_uses_one_mask():
    pred = torch.zeros(1, 2, 2, 2)
    label = torch.full((1, 2, 2), 255)
    out = SegLossPlus(num_classes=2)(pred, label)
    # p = 0.5, targets 0: (1-alpha) * log 2 * 0.25 per pixel, 2 masks, num_masks clamped to 1
    assert out['loss_mask'].item() == pytest.approx(100 * 2 * 0.75 * math.log(2) * 0.25, rel=1e-6)
    assert out['loss_dice'].item() == 0
    assert reduce_num_masks(0, torch.device('cpu')) == 1.0


@pytest.mark.parametrize('alpha,gamma', [(0.25, 2.0), (0.5, 1.5), (-1, 2.0)])
def test_label_based_loss_equals_onehot_reference(alpha, gamma):
    from cascade_clip.models.losses import focal_and_dice_from_labels
    torch.manual_seed(0)
    pred = torch.randn(3, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    label = torch.randint(0, 5, (3, 6, 7))
    label[0, :2] = 255
    label[2] = 255  # an image with nothing labelled
    onehot, present = label_to_onehot(label, 5)
    onehot = onehot.double()
    focal_ref = sigmoid_focal_loss(pred.flatten(2).flatten(0, 1), onehot.flatten(2).flatten(0, 1), 3.0, alpha, gamma)
    dice_ref = dice_loss(pred.flatten(2)[present], onehot.flatten(2)[present], 3.0)
    focal, dice = focal_and_dice_from_labels(pred, label, 3.0, alpha, gamma)
    torch.testing.assert_close(focal, focal_ref)
    torch.testing.assert_close(dice, dice_ref)
    g1 = torch.autograd.grad(focal + dice, pred)[0]
    g2 = torch.autograd.grad(focal_ref + dice_ref, pred)[0]
    torch.testing.assert_close(g1, g2)
