"""Sigmoid focal + dice mask loss of Cascade-CLIP and ZegCLIP (paper §3.5)."""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.builder import LOSSES
from torch.utils.checkpoint import checkpoint

from ...utils.strict import strict_kwargs
from .loss_sum import LossSum, SumLoss


def _chunk_sums(logits: torch.Tensor, label: torch.Tensor, k0: int, alpha: float,
                gamma: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Focal and dice sums of the masks of classes k0..k0+c-1 (the published one-hot formulas).

    Args:
        logits: (B, c, h, w) mask logits (fp32 or fp64), upsampled bilinearly to the label's size.
        label: (B, H, W) class ids; -1 for ignored pixels (a target of 0 for every class).
    """
    # one positive per labelled pixel: focal summed as if every target were 0, then corrected
    x = logits
    if x.shape[-2:] != label.shape[-2:]:
        x = F.interpolate(x, size=label.shape[-2:], mode='bilinear', align_corners=False)
    B, c, H, W = x.shape
    w_pos, w_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    p = x.sigmoid()
    # focal of a target 0: (1-α)·p^γ·softplus(x); of a target 1: α·(1-p)^γ·softplus(-x)
    focal = w_neg * (p.pow(gamma) * F.softplus(x)).sum()
    mine = (label >= k0) & (label < k0 + c)  # pixels labelled with a class of the chunk
    index = (label - k0).clamp(0, c - 1).unsqueeze(1)
    x_pos, p_pos = x.gather(1, index)[:, 0][mine], p.gather(1, index)[:, 0][mine]
    focal = focal + (w_pos * (1 - p_pos).pow(gamma) * F.softplus(-x_pos)
                     - w_neg * p_pos.pow(gamma) * F.softplus(x_pos)).sum()
    mask = (torch.arange(B, device=x.device).view(B, 1, 1) * c + label - k0)[mine]  # (image, class)
    t_sum = torch.bincount(mask, minlength=B * c).to(x.dtype)
    inter = x.new_zeros(B * c).index_add(0, mask, p_pos)
    dice = 1 - (2 * inter + 1) / (p.sum((2, 3)).flatten() + t_sum + 1)
    return focal / (H * W), dice[t_sum > 0].sum()


def focal_dice_sums(logits: torch.Tensor, label: torch.Tensor, alpha: float = 0.25,
                    gamma: float = 2.0, ignore_index: int = 255,
                    class_chunk: int = 16) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Unnormalised sigmoid focal and dice losses of mask logits, and their number of masks
    (``class_chunk`` classes at a time, recomputed in the backward pass).

    Args:
        logits: (B, K, h, w) mask logits, upsampled bilinearly to the label's size.
        label: (B, H, W) class ids in [0, K) or ``ignore_index``.

    Returns:
        focal: () the focal loss (α, γ) of each of the B·K masks, averaged over its pixels, summed.
        dice: () 1 - (2·Σpt + 1) / (Σp + Σt + 1) of each present (image, class) mask, summed.
        num_masks: the number of present masks, the published normaliser of both.
    """
    with torch.autocast(logits.device.type, enabled=False):  # the loss stays in fp32
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        label = label.long().masked_fill(label == ignore_index, -1)
        focal = dice = logits.new_zeros(())
        for k0 in range(0, logits.shape[1], class_chunk):
            args = (logits[:, k0:k0 + class_chunk], label, k0, alpha, gamma)
            f, d = (checkpoint(_chunk_sums, *args, use_reentrant=False)
                    if torch.is_grad_enabled() and logits.requires_grad else _chunk_sums(*args))
            focal, dice = focal + f, dice + d
    B, K = logits.shape[:2]
    valid = label >= 0
    masks = (torch.arange(B, device=label.device).view(B, 1, 1) * K + label)[valid]
    return focal, dice, int(torch.unique(masks).numel())


class SegPlusCriterion(nn.Module):
    """Holds the ``empty_weight`` buffer of the published checkpoints (it has no use)."""

    def __init__(self, num_classes: int, eos_coef: float = 0.1):
        super().__init__()
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer('empty_weight', empty_weight)


@LOSSES.register_module()
@strict_kwargs
class SegLossPlus(SumLoss):
    """Focal + dice loss of the head's mask logits, both per mask (unit ``'masks'``).

    Args:
        num_classes: number of seen classes (sizes the published checkpoint buffer only).
        dec_layers: key of the published configs, accepted and unused (final masks only).
        mask_weight, dice_weight, loss_weight: ``loss_mask = focal·mask_weight·loss_weight``,
            ``loss_dice = dice·dice_weight·loss_weight``.
        focal_alpha, focal_gamma: α and γ of the focal loss.
        class_chunk: classes whose full-resolution tensors exist at a time.
    """

    def __init__(self, num_classes: int, dec_layers: int = 3, mask_weight: float = 100.0,
                 dice_weight: float = 1.0, loss_weight: float = 1.0, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, class_chunk: int = 16):
        super().__init__()
        self.mask_weight = mask_weight * loss_weight
        self.dice_weight = dice_weight * loss_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.class_chunk = class_chunk
        self.criterion = SegPlusCriterion(num_classes)

    def forward(self, pred_masks: torch.Tensor, label: torch.Tensor,
                ignore_index: int = 255) -> Dict[str, LossSum]:
        """pred_masks (B, K, h, w) logits, label (B, H, W) ids -> ``loss_mask``, ``loss_dice``."""
        focal, dice, n = focal_dice_sums(pred_masks, label, self.focal_alpha, self.focal_gamma,
                                         ignore_index, self.class_chunk)
        return {'loss_mask': LossSum(focal * self.mask_weight, n, 'masks'),
                'loss_dice': LossSum(dice * self.dice_weight, n, 'masks')}
