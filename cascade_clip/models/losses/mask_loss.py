"""Sigmoid focal + dice mask loss of Cascade-CLIP / ZegCLIP (paper §3.5).

Pure functions first (unit-tested alone), then the registered ``SegLossPlus`` module.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.builder import LOSSES

from ...utils.strict import strict_kwargs


def sigmoid_focal_loss(logits: torch.Tensor,
                       targets: torch.Tensor,
                       num_masks: float,
                       alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss, mean over pixels, summed over masks, divided by ``num_masks``.

    Args:
        logits: (M, P) mask logits, M masks of P pixels.
        targets: (M, P) binary targets (float).
        num_masks: normaliser (number of ground-truth masks in the batch).
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t)**gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss 1 - (2·Σpt + 1) / (Σp + Σt + 1) per mask, summed, divided by ``num_masks``.

    Args:
        logits: (M, P) mask logits; targets: (M, P) binary targets.
    """
    p = logits.sigmoid()
    numerator = 2 * (p * targets).sum(-1)
    denominator = p.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def check_label_range(label: torch.Tensor, num_classes: int, ignore_index: int = 255) -> None:
    """Raise ValueError for label values outside [0, num_classes) other than the ignore index."""
    bad = (label != ignore_index) & ((label < 0) | (label >= num_classes))
    if bad.any():
        raise ValueError(f'label values {sorted(label[bad].unique().tolist())} are outside '
                         f'[0, {num_classes}) and are not the ignore index {ignore_index}')


def label_to_onehot(label: torch.Tensor, num_classes: int,
                    ignore_index: int = 255) -> Tuple[torch.Tensor, torch.Tensor]:
    """Binary per-class targets from a label map.

    Args:
        label: (B, H, W) integer class ids in [0, num_classes) or ``ignore_index``.

    Returns:
        onehot: (B, K, H, W) float; ignored pixels are all-zero.
        present: (B, K) bool, the classes present in each image (the unique values
            of the label map except the ignore value).
    """
    check_label_range(label, num_classes, ignore_index)
    valid = label != ignore_index
    idx = torch.where(valid, label, torch.full_like(label, num_classes)).long()
    onehot = F.one_hot(idx, num_classes + 1)[..., :num_classes].permute(0, 3, 1, 2)
    onehot = onehot.to(torch.float32)
    present = onehot.flatten(2).amax(-1) > 0
    return onehot, present


def _pow(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return x * x if gamma == 2 else x.pow(gamma)


def focal_and_dice_from_labels(logits: torch.Tensor,
                               label: torch.Tensor,
                               num_masks: Optional[float] = None,
                               alpha: float = 0.25,
                               gamma: float = 2.0,
                               ignore_index: int = 255) -> Tuple[torch.Tensor, torch.Tensor]:
    """``sigmoid_focal_loss`` and ``dice_loss`` computed from the label map.

    Same values as building the one-hot targets (B, K, H, W) and calling the two functions
    above, without building them: for a binary target the focal term is
    (1-α)·p^γ·softplus(x) where t = 0 and α·(1-p)^γ·softplus(-x) where t = 1, so the t = 0
    term is summed over every element and corrected at the single positive channel of each
    labelled pixel; the dice sums Σp·t and Σt are gathered per (image, class).

    Args:
        logits: (B, K, H, W) mask logits (float32).
        label: (B, H, W) class ids in [0, K) or ``ignore_index``.
        num_masks: normaliser; by default the number of (image, present class) pairs,
            averaged over the ranks of a distributed run (``reduce_num_masks``).

    Returns:
        (focal, dice), both divided by ``num_masks``.
    """
    B, K, H, W = logits.shape
    P = H * W
    x = logits.reshape(B, K, P)
    prob = x.sigmoid()
    w_neg = (1 - alpha) if alpha >= 0 else 1.0
    w_pos = alpha if alpha >= 0 else 1.0
    focal_sum = w_neg * (_pow(prob, gamma) * F.softplus(x)).sum()

    lab = label.reshape(B, P).long()
    valid = lab != ignore_index
    b_idx = torch.arange(B, device=lab.device).unsqueeze(1).expand(B, P)[valid]
    k_idx = lab[valid]
    p_idx = torch.arange(P, device=lab.device).unsqueeze(0).expand(B, P)[valid]
    x_pos = x[b_idx, k_idx, p_idx]
    p_pos = prob[b_idx, k_idx, p_idx]
    focal_sum = focal_sum + (w_pos * _pow(1 - p_pos, gamma) * F.softplus(-x_pos)
                             - w_neg * _pow(p_pos, gamma) * F.softplus(x_pos)).sum()

    flat = b_idx * K + k_idx
    t_sum = torch.bincount(flat, minlength=B * K).to(x.dtype)
    present = t_sum > 0
    if num_masks is None:
        num_masks = reduce_num_masks(int(present.sum()), x.device)
    focal = focal_sum / P / num_masks
    inter = torch.zeros(B * K, device=x.device, dtype=x.dtype).index_add(0, flat, p_pos)
    p_sum = prob.sum(-1).reshape(-1)
    dice = (1 - (2 * inter[present] + 1) / (p_sum[present] + t_sum[present] + 1)).sum() / num_masks
    return focal, dice


def reduce_num_masks(num_masks: int, device: torch.device) -> float:
    """Number of masks averaged over the ranks of a distributed run, at least 1."""
    n = torch.as_tensor([float(num_masks)], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return float(torch.clamp(n, min=1).item())


class SegPlusCriterion(nn.Module):
    """Holds the ``empty_weight`` buffer of the published checkpoints (it has no use)."""

    def __init__(self, num_classes: int, eos_coef: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer('empty_weight', empty_weight)


@LOSSES.register_module()
@strict_kwargs
class SegLossPlus(nn.Module):
    """Focal + dice loss on the head's ``pred_masks``.

    Args:
        num_classes: number of seen classes (sizes the checkpoint buffer only).
        dec_layers: key of the published configs, accepted for compatibility (only the final
            masks are supervised).
        mask_weight, dice_weight, loss_weight: ``loss_mask = focal·mask_weight·loss_weight``,
            ``loss_dice = dice·dice_weight·loss_weight``.
    """

    def __init__(self,
                 num_classes: int,
                 dec_layers: int = 3,  # compatibility, see above
                 mask_weight: float = 100.0,
                 dice_weight: float = 1.0,
                 loss_weight: float = 1.0,
                 focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0):
        super().__init__()
        self.num_classes = num_classes
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.loss_weight = loss_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.criterion = SegPlusCriterion(num_classes)

    @property
    def loss_name(self) -> str:
        return 'loss_mask'

    def forward(self, pred_masks: torch.Tensor, label: torch.Tensor,
                ignore_index: int = 255) -> Dict[str, torch.Tensor]:
        """pred_masks: (B, K, h, w) logits; label: (B, H, W) ids -> {loss_mask, loss_dice}."""
        pred_masks = pred_masks.float()
        check_label_range(label, pred_masks.shape[1], ignore_index)
        if pred_masks.shape[-2:] != label.shape[-2:]:
            pred_masks = F.interpolate(pred_masks, size=label.shape[-2:], mode='bilinear',
                                       align_corners=False)
        # num_masks: present labels per image (unique values but the ignore index), summed
        focal, dice = focal_and_dice_from_labels(pred_masks, label, None, self.focal_alpha,
                                                 self.focal_gamma, ignore_index)
        return {
            'loss_mask': focal * self.mask_weight * self.loss_weight,
            'loss_dice': dice * self.dice_weight * self.loss_weight,
        }
