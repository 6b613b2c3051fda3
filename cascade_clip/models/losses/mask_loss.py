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


def count_masks(label: torch.Tensor, ignore_index: int = 255) -> int:
    """Number of (image, class) pairs present in ``label`` (B, [1,] H, W): per image, the
    distinct values other than ``ignore_index`` and the -1 marks of unlabelled pixels."""
    lab = label.reshape(label.shape[0], -1).long()
    valid = (lab != ignore_index) & (lab >= 0)
    b_idx = torch.arange(lab.shape[0], device=lab.device).unsqueeze(1).expand_as(lab)[valid]
    return int(torch.unique(b_idx * (int(lab.max()) + 1) + lab[valid]).numel()) if valid.any() else 0


def _chunk_focal_dice(x: torch.Tensor, label: torch.Tensor, k0: int, size: Tuple[int, int],
                      alpha: float, gamma: float, with_grad: bool = False):
    """Unnormalised focal and dice sums of the classes k0..k0+c-1, and optionally their
    gradients with respect to ``x``, in closed form.

    Args:
        x: (B, c, h, w) float32 logits of ``c`` classes, upsampled (bilinear,
            align_corners=False) to ``size`` = (H, W) here when (h, w) differs.
        label: (B, H, W) class ids; pixels of other classes or ignored count as t = 0.
        with_grad: also return d focal / d x and d dice / d x, (B, c, h, w) each (the
            gradient at full resolution taken back through the upsampling by its adjoint).

    Returns:
        focal: Σ over the chunk's masks of the per-mask mean focal term.
        dice: Σ over the chunk's present masks of 1 - (2Σpt + 1) / (Σp + Σt + 1).
        (grad_focal, grad_dice) or None.
    """
    low = x
    upsample = tuple(x.shape[-2:]) != tuple(size)
    if upsample:
        low = x.detach().requires_grad_(with_grad)
        with torch.enable_grad():  # a graph of the upsampling alone (it saves no tensor)
            x = F.interpolate(low, size=size, mode='bilinear', align_corners=False)
    B, c = x.shape[:2]
    xf = x.detach().reshape(B, c, -1)
    P = xf.shape[-1]
    classes = torch.arange(k0, k0 + c, device=label.device).view(1, c, 1)
    t = label.reshape(B, 1, -1) == classes  # (B, c, P) bool
    tf = t.to(xf.dtype)
    w_neg = (1 - alpha) if alpha >= 0 else 1.0
    w_pos = alpha if alpha >= 0 else 1.0
    # binary target: (1-α)·p^γ·softplus(x) where t = 0, α·(1-p)^γ·softplus(-x) where t = 1,
    # i.e. w·q^γ·softplus(z) with z = ±x (the sign s = 1 - 2t) and q = sigmoid(z)
    z = torch.where(t, -xf, xf)
    q = z.sigmoid()
    sp = F.softplus(z)
    del z
    qg = _pow(q, gamma)
    w = torch.where(t, xf.new_tensor(w_pos), xf.new_tensor(w_neg))
    focal = (w * qg * sp).sum() / P
    p = torch.where(t, 1 - q, q)  # sigmoid(x)
    t_sum = tf.sum(-1)
    present = t_sum > 0
    inter = (p * tf).sum(-1)
    den = p.sum(-1) + t_sum + 1
    num = 2 * inter + 1
    dice = (1 - num / den)[present].sum()
    if not with_grad:
        return focal, dice, None
    # d/dz [q^γ softplus(z)] = q^γ (γ (1 - q) softplus(z) + q); dz/dx = s
    g_focal = torch.where(t, -w, w).mul_(qg).mul_(sp.mul_(gamma).mul_(1 - q).add_(q)).div_(P)
    del w, qg, sp, q
    # d dice / d p_j = (num - 2 t_j den) / den², d p / d x = p (1 - p); absent masks: 0
    a = torch.where(present, num / den**2, torch.zeros_like(den)).unsqueeze(-1)
    b = torch.where(present, 2 / den, torch.zeros_like(den)).unsqueeze(-1)
    g_dice = (a - b * tf).mul_(p).mul_(1 - p)
    g_focal, g_dice = g_focal.reshape(x.shape), g_dice.reshape(x.shape)
    if upsample:
        g_focal = torch.autograd.grad(x, low, g_focal, retain_graph=True)[0]
        g_dice = torch.autograd.grad(x, low, g_dice)[0]
    return focal, dice, (g_focal, g_dice)


class _LeanFocalDice(torch.autograd.Function):
    """Focal and dice sums of all classes, computed class chunk by class chunk.

    The forward computes, chunk by chunk, the values and (when the logits need a gradient)
    their gradients with respect to the low-resolution logits in closed form, through the
    adjoint of the upsampling; only these two (B, K, h, w) gradients are kept, and the
    backward scales them by the incoming gradients. The (B, K, H, W) full-resolution tensors
    never exist, only a few (B, chunk, H, W) ones at a time.
    """

    @staticmethod
    def forward(ctx, logits, label, size, alpha, gamma, chunk):
        with_grad = ctx.needs_input_grad[0]
        focal = logits.new_zeros(())
        dice = logits.new_zeros(())
        grads = []
        for k0 in range(0, logits.shape[1], chunk):
            f, d, g = _chunk_focal_dice(logits[:, k0:k0 + chunk], label, k0, size, alpha, gamma,
                                        with_grad)
            focal, dice = focal + f, dice + d
            grads.append(g)
        if with_grad:
            ctx.save_for_backward(torch.cat([g[0] for g in grads], 1), torch.cat([g[1] for g in grads], 1))
        return focal, dice

    @staticmethod
    def backward(ctx, grad_focal, grad_dice):
        g_focal, g_dice = ctx.saved_tensors
        return g_focal * grad_focal + g_dice * grad_dice, None, None, None, None, None


def lean_focal_and_dice(logits: torch.Tensor,
                        label: torch.Tensor,
                        num_masks: Optional[float] = None,
                        alpha: float = 0.25,
                        gamma: float = 2.0,
                        ignore_index: int = 255,
                        class_chunk: int = 16) -> Tuple[torch.Tensor, torch.Tensor]:
    """``focal_and_dice_from_labels`` of the logits upsampled to the label's size, with the
    memory of a few class chunks.

    Equal values and gradients to upsampling ``logits`` bilinearly (align_corners=False) to
    (H, W) and calling ``sigmoid_focal_loss`` / ``dice_loss`` on the one-hot targets of the
    present masks, but nothing of size (B, K, H, W) is built or kept for the backward pass:
    classes are processed ``class_chunk`` at a time, and the gradient with respect to the
    low-resolution logits is computed in the same pass, in closed form (kept: two tensors
    of the logits' size).

    Args:
        logits: (B, K, h, w) mask logits at any resolution (cast to float32).
        label: (B, H, W) class ids in [0, K) or ``ignore_index``.
        num_masks: normaliser; by default the number of (image, present class) pairs,
            averaged over the ranks of a distributed run (``reduce_num_masks``). Give it to
            normalise over a larger batch (gradient accumulation).
        class_chunk: classes per chunk (memory ~ a few (B, class_chunk, H, W) float tensors).

    Returns:
        (focal, dice), both divided by ``num_masks``.
    """
    logits = logits.float()
    if num_masks is None:
        num_masks = reduce_num_masks(count_masks(label, ignore_index), logits.device)
    label = label.long()
    focal, dice = _LeanFocalDice.apply(logits, label, tuple(label.shape[-2:]), alpha, gamma,
                                       max(1, int(class_chunk)))
    return focal / num_masks, dice / num_masks


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
        class_chunk: classes per chunk of the lean computation (``lean_focal_and_dice``):
            the logits may come at a lower resolution than the label; they are upsampled
            chunk by chunk and no full-resolution tensor is kept for the backward pass.
        full_resolution: compute as the published code does instead: upsample all logits to
            the label's size, then ``focal_and_dice_from_labels``, keeping (B, K, H, W)
            tensors for the backward pass. Same values and gradients, more memory; a
            reference for the lean path (tests/test_models/test_losses/test_lean_loss.py).
    """

    def __init__(self,
                 num_classes: int,
                 dec_layers: int = 3,  # compatibility, see above
                 mask_weight: float = 100.0,
                 dice_weight: float = 1.0,
                 loss_weight: float = 1.0,
                 focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0,
                 class_chunk: int = 16,
                 full_resolution: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.loss_weight = loss_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.class_chunk = class_chunk
        self.full_resolution = full_resolution
        self.criterion = SegPlusCriterion(num_classes)

    @property
    def loss_name(self) -> str:
        return 'loss_mask'

    def forward(self, pred_masks: torch.Tensor, label: torch.Tensor, ignore_index: int = 255,
                num_masks: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """pred_masks: (B, K, h, w) logits at any resolution (upsampled bilinearly to the
        label's size); label: (B, H, W) ids -> {loss_mask, loss_dice}.

        ``num_masks``: the normaliser; by default the present labels per image (unique
        values but the ignore index) summed over the batch and averaged over the ranks.
        """
        check_label_range(label, pred_masks.shape[1], ignore_index)
        if self.full_resolution:
            up = pred_masks.float()
            if up.shape[-2:] != label.shape[-2:]:
                up = F.interpolate(up, size=label.shape[-2:], mode='bilinear', align_corners=False)
            focal, dice = focal_and_dice_from_labels(up, label, num_masks, self.focal_alpha,
                                                     self.focal_gamma, ignore_index)
        else:
            focal, dice = lean_focal_and_dice(pred_masks, label, num_masks, self.focal_alpha,
                                              self.focal_gamma, ignore_index, self.class_chunk)
        return {
            'loss_mask': focal * self.mask_weight * self.loss_weight,
            'loss_dice': dice * self.dice_weight * self.loss_weight,
        }
