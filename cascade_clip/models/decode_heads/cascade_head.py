"""``ATMSingleHeadSeg``: the Cascade-CLIP decoder bank and text-query classifier (SPEC §4)."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.utils.weight_init import constant_init, trunc_normal_init
from mmseg.models.builder import HEADS
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from .cascade_decoder import CascadeDecoder

PUBLISHED_STAGES = ((0, 1, 2), (3, 4, 5), (6, ))


def gaussian_weights(n: int, sigma: float = 1.0) -> torch.Tensor:
    """Neighbourhood Gaussian Aggregation init: exp(-0.5·((n-1-k)/σ)²), k = 0..n-1.

    n=3, σ=1 gives [e^-2, e^-0.5, 1]: the deepest map of a stage weighs most.
    """
    d = torch.arange(n - 1, -1, -1, dtype=torch.float32) / sigma
    return torch.exp(-0.5 * d**2)


@HEADS.register_module()
class ATMSingleHeadSeg(BaseDecodeHead):
    """Cascade of transformer decoders whose class queries come from text embeddings.

    Args:
        img_size: side of the square ``pred_masks`` the head returns (published: 512).
        in_channels: channels of the backbone maps (CLIP's output_dim).
        seen_idx: indices (among ``all_idx``) of the seen classes, for calibration and
            pseudo-labelling.
        all_idx: indices of all classes.
        embed_dims: decoder width (== in_channels).
        num_layers, num_heads: layers and heads of each decoder.
        cascade_stages: for each decoder, the backbone maps it reads (indices into the tuple of
            maps). Default: the published layout ((0,1,2), (3,4,5), (6,)); ((6,),) or ((-1,),)
            is a ZegCLIP-style single decoder on the last layer.
        aggregation_sigma: σ of the Gaussian initial weights of multi-map stages.
        calibration: subtracted from the seen classes' scores at inference in the inductive
            setting (published 0.1).
        self_training: transductive setting (no calibration, pseudo-labels for pixels
            marked -1).
        use_stages, use_proj, crop_train: accepted for config compatibility.
    """

    def __init__(self,
                 img_size: int,
                 in_channels: int,
                 seen_idx: Sequence[int],
                 all_idx: Sequence[int],
                 embed_dims: int = 512,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 use_stages: int = 6,
                 use_proj: bool = False,
                 crop_train: bool = False,
                 cascade_stages: Sequence[Sequence[int]] = PUBLISHED_STAGES,
                 aggregation_sigma: float = 1.0,
                 dim_feedforward: Optional[int] = None,
                 dropout: float = 0.1,
                 calibration: float = 0.1,
                 self_training: bool = False,
                 **kwargs):
        kwargs.setdefault('channels', embed_dims)
        kwargs.setdefault('num_classes', len(seen_idx))
        kwargs['init_cfg'] = None
        super().__init__(in_channels=in_channels, **kwargs)
        del self.conv_seg  # classification is done by the text queries
        if in_channels != embed_dims:
            raise ValueError(f'in_channels ({in_channels}) must equal embed_dims ({embed_dims}): '
                             f'the decoders attend directly over the backbone maps')
        self.image_size = img_size
        self.embed_dims = embed_dims
        self.seen_idx = [int(i) for i in seen_idx]
        self.all_idx = [int(i) for i in all_idx]
        self.use_stages = use_stages
        self.calibration = calibration
        self.self_training = self_training
        stages = tuple(tuple(int(i) for i in s) for s in cascade_stages)
        if not stages or any(len(s) == 0 for s in stages):
            raise ValueError(f'cascade_stages must be non-empty lists of map indices, got {cascade_stages}')
        self.cascade_stages = stages
        ffn = dim_feedforward or 4 * embed_dims
        self.cascade_decoders = nn.ModuleList(
            CascadeDecoder(num_layers, embed_dims, num_heads, ffn, dropout) for _ in stages)
        self.q_projs = nn.ModuleList(nn.Linear(2 * embed_dims, embed_dims) for _ in stages)
        self._weight_names: List[Optional[str]] = []
        n_multi = 0
        for s in stages:
            if len(s) > 1:
                n_multi += 1
                name = f'weights_s{n_multi}'
                self.register_parameter(name, nn.Parameter(gaussian_weights(len(s), aggregation_sigma)))
                self._weight_names.append(name)
            else:
                self._weight_names.append(None)

    @property
    def num_maps_required(self) -> int:
        """Number of backbone maps the layout reads (from its largest non-negative index)."""
        return max(max(i if i >= 0 else -i - 1 for i in s) for s in self.cascade_stages) + 1

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=.02, bias=0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs, upsample: bool = True) -> torch.Tensor:
        """Mask logits.

        Args:
            inputs: ``[[maps, global], text]``: ``maps`` a tuple of (B, C, h, w) backbone maps,
                ``global`` (B, C), ``text`` (K, C) class embeddings.
            upsample: resize to (img_size, img_size); False returns the decoders' (h, w)
                logits (training: the loss upsamples them chunk by chunk).

        Returns:
            pred_masks: (B, K, img_size, img_size) logits, or (B, K, h, w).
        """
        (maps, global_emb), text = inputs[0], inputs[1]
        if len(maps) < self.num_maps_required:
            raise ValueError(f'the cascade layout {self.cascade_stages} needs '
                             f'{self.num_maps_required} backbone maps, got {len(maps)}')
        B = global_emb.shape[0]
        h, w = maps[-1].shape[-2:]
        text = text.to(global_emb.dtype)
        text_b = text.unsqueeze(0).expand(B, -1, -1)
        q_in = torch.cat([global_emb.unsqueeze(1) * text_b, text_b], dim=-1)  # (B, K, 2C)
        total = None
        for j, stage in enumerate(self.cascade_stages):
            name = self._weight_names[j]
            if name is None:
                mem = maps[stage[0]]
            else:
                weights = getattr(self, name).to(global_emb.dtype)
                mem = sum(weights[k] * maps[i] for k, i in enumerate(stage))
            mem = mem.flatten(2).transpose(1, 2)  # (B, N, C)
            logits = self.cascade_decoders[j](self.q_projs[j](q_in), mem)
            total = logits if total is None else total + logits
        masks = total.reshape(B, -1, h, w)
        if upsample and (h, w) != (self.image_size, self.image_size):
            masks = F.interpolate(masks, size=(self.image_size, self.image_size), mode='bilinear',
                                  align_corners=False)
        return masks

    def semantic_inference(self, pred_masks: torch.Tensor) -> torch.Tensor:
        """sigmoid scores, minus ``calibration`` on the seen classes (inductive setting)."""
        scores = pred_masks.float().sigmoid()
        if not self.self_training and self.calibration:
            if self.seen_idx and max(self.seen_idx) >= scores.shape[1]:
                raise ValueError(f'seen_idx {self.seen_idx} does not fit {scores.shape[1]} classes')
            bias = torch.zeros(scores.shape[1], device=scores.device, dtype=scores.dtype)
            bias[self.seen_idx] = self.calibration
            scores = scores - bias.view(1, -1, 1, 1)
        return scores

    def forward_test(self, inputs, img_metas, test_cfg) -> torch.Tensor:
        return self.semantic_inference(self.forward(inputs))

    # ------------------------------------------------------------------ training
    def pseudo_label(self, pred_masks: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Fill pixels marked -1 with the argmax over the unseen classes of the detached scores.

        pred_masks: (B, K, h, w) logits over all classes; gt: (B, 1, H, W) long.
        """
        gt = gt.clone()
        marked = gt == -1
        if not marked.any():
            return gt
        unseen = [i for i in range(pred_masks.shape[1]) if i not in set(self.seen_idx)]
        if not unseen:
            gt[marked] = self.ignore_index
            return gt
        with torch.no_grad():
            unseen_t = torch.as_tensor(unseen, device=pred_masks.device)
            # argmax over the unseen channels only (sigmoid is monotonic, seen channels
            # excluded); the upsampling acts per channel, so only those are upsampled
            scores = pred_masks.detach().index_select(1, unseen_t).float()
            if scores.shape[-2:] != gt.shape[-2:]:
                scores = F.interpolate(scores, size=gt.shape[-2:], mode='bilinear', align_corners=False)
            pseudo = unseen_t[scores.argmax(dim=1, keepdim=True)]
        gt[marked] = pseudo[marked]
        return gt

    def forward_train(self, inputs, img_metas, gt_semantic_seg, train_cfg,
                      num_masks: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Loss dict; ``num_masks`` overrides the loss normaliser (gradient accumulation)."""
        # the decoders' low-resolution logits go to the loss, which upsamples them class chunk
        # by class chunk; the same values as upsampling here when img_size is the label's size
        pred_masks = self.forward(inputs, upsample=tuple(gt_semantic_seg.shape[-2:]) !=
                                  (self.image_size, self.image_size))
        gt = gt_semantic_seg
        if self.self_training:
            gt = self.pseudo_label(pred_masks, gt)
        elif (gt == -1).any():
            gt = torch.where(gt == -1, torch.full_like(gt, self.ignore_index), gt)
        return self.losses(pred_masks, gt, num_masks)

    def losses(self, seg_logit: torch.Tensor, seg_label: torch.Tensor,
               num_masks: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """seg_logit (B, K, h, w) mask logits, seg_label (B, 1, H, W) -> loss dict + acc_seg."""
        label = seg_label.squeeze(1)
        loss = self.loss_decode(seg_logit, label, ignore_index=self.ignore_index, num_masks=num_masks)
        with torch.no_grad():
            pred = chunked_upsampled_argmax(seg_logit.detach(), tuple(label.shape[-2:]))
            # pixel accuracy in %, as mmseg's accuracy(topk=1), with an argmax instead of topk
            valid = label != self.ignore_index
            correct = (pred == label)[valid]
            loss['acc_seg'] = correct.float().mean() * 100 if correct.numel() else seg_logit.new_zeros(())
        return loss


def chunked_upsampled_argmax(logits: torch.Tensor, size: Tuple[int, int], chunk: int = 16) -> torch.Tensor:
    """argmax over classes of ``logits`` (B, K, h, w) upsampled bilinearly to ``size`` (H, W),
    -> (B, H, W) long, computed ``chunk`` classes at a time (first maximum on ties)."""
    best_val = best_idx = None
    for k0 in range(0, logits.shape[1], chunk):
        x = logits[:, k0:k0 + chunk].float()
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        val, idx = x.max(dim=1)
        idx = idx + k0
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx, best_idx)
    return best_idx
