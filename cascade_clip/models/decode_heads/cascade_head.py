"""``ATMSingleHeadSeg``: the Cascade-CLIP decoder bank and text-query classifier.

Paper §3.3-3.4 (cascaded vision-language alignment, Neighbourhood Gaussian Aggregation);
parameter names follow the published ``ATMSingleHeadSeg`` so its checkpoints load.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.utils.weight_init import constant_init, trunc_normal_init
from mmseg.models.builder import HEADS
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from ...utils.strict import strict_kwargs
from ..backbones.features import VisualFeatures
from ..utils import upsample_bilinear_exact
from .cascade_decoder import CascadeDecoder

PUBLISHED_STAGES = ((0, 1, 2), (3, 4, 5), (-1, ))


def gaussian_weights(n: int, sigma: float = 1.0) -> torch.Tensor:
    """Neighbourhood Gaussian Aggregation init: exp(-0.5·((n-1-k)/σ)²), k = 0..n-1.

    n=3, σ=1 gives [e^-2, e^-0.5, 1]: the deepest map of a stage weighs most.
    """
    d = torch.arange(n - 1, -1, -1, dtype=torch.float32) / sigma
    return torch.exp(-0.5 * d**2)


class HeadInputs(NamedTuple):
    """What the segmentor hands to the head for one batch.

    Attributes:
        features: the image encoder's :class:`VisualFeatures` (levels, dense, global_emb).
        text: (K, D) text embeddings of the K classes in play (the queries' source).
        seen: indices (into the K classes) of the seen classes: calibrated at inference in the
            inductive setting, excluded from the pseudo-labels in the transductive one.
    """
    features: VisualFeatures
    text: torch.Tensor
    seen: Sequence[int]


@HEADS.register_module()
@strict_kwargs
class ATMSingleHeadSeg(BaseDecodeHead):
    """Cascade of transformer decoders whose class queries come from text embeddings.

    The head holds no class list: the classes of each call (their text embeddings and which
    are seen) come with its :class:`HeadInputs`, from the segmentor's vocabulary.

    Args:
        img_size: side of the square ``pred_masks`` the head returns (published: 512).
        in_channels: channels of the backbone maps (CLIP's output_dim).
        embed_dims: decoder width (== in_channels).
        num_layers, num_heads: layers and heads of each decoder.
        cascade_stages: for each decoder, the backbone maps it reads: indices into the
            encoder's ``levels`` (one per out index), -1 for the last layer's dense map.
            Default: the published layout ((0, 1, 2), (3, 4, 5), (-1, )); ((-1, ), ) is a
            ZegCLIP-style single decoder on the last layer.
        aggregation_sigma: σ of the Gaussian initial weights of multi-map stages.
        calibration: subtracted from the seen classes' scores at inference in the inductive
            setting (published 0.1).
        self_training: transductive setting (no calibration, pseudo-labels for pixels
            marked -1).
        seen_idx, all_idx, use_stages, use_proj, crop_train: keys of the published configs,
            accepted for compatibility: the classes come from the segmentor's vocabulary
            (which checks seen_idx/all_idx against itself), the layout from cascade_stages,
            and the published code does not read use_proj or crop_train.
        num_classes: as BaseDecodeHead's, the number of classes trained on (the seen
            classes); the channels of each call come with its inputs.
    """

    def __init__(self,
                 img_size: int,
                 in_channels: int,
                 embed_dims: int = 512,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 cascade_stages: Sequence[Sequence[int]] = PUBLISHED_STAGES,
                 aggregation_sigma: float = 1.0,
                 dim_feedforward: Optional[int] = None,
                 dropout: float = 0.1,
                 calibration: float = 0.1,
                 self_training: bool = False,
                 seen_idx: Optional[Sequence[int]] = None,  # compatibility, see above
                 all_idx: Optional[Sequence[int]] = None,  # compatibility
                 use_stages: Optional[int] = None,  # compatibility
                 use_proj: bool = False,  # compatibility
                 crop_train: bool = False,  # compatibility
                 **kwargs):
        kwargs.setdefault('channels', embed_dims)
        # BaseDecodeHead's default init_cfg initialises its conv_seg, which this head does not
        # have (see below); the head's own init_weights follows the published initialisation
        kwargs.setdefault('init_cfg', None)
        super().__init__(in_channels=in_channels, **kwargs)
        # BaseDecodeHead always builds a 1x1 conv classifier; this head classifies with the
        # text queries instead, and published checkpoints have no conv_seg
        del self.conv_seg
        if in_channels != embed_dims:
            raise ValueError(f'in_channels ({in_channels}) must equal embed_dims ({embed_dims}): '
                             f'the decoders attend directly over the backbone maps')
        self.image_size = img_size
        self.embed_dims = embed_dims
        self.calibration = calibration
        self.self_training = self_training
        stages = tuple(tuple(int(i) for i in s) for s in cascade_stages)
        if not stages or any(len(s) == 0 for s in stages) or any(i < -1 for s in stages for i in s):
            raise ValueError(f'cascade_stages must be non-empty lists of level indices (>= 0) or '
                             f'-1 (the last layer), got {cascade_stages}')
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
    def num_levels_required(self) -> int:
        """Number of encoder levels the layout reads (its largest level index + 1)."""
        return max(i for s in self.cascade_stages for i in s) + 1

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=.02, bias=0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: HeadInputs, upsample: bool = True) -> torch.Tensor:
        """Mask logits for the K classes of ``inputs.text``.

        Args:
            inputs: the backbone's features, the (K, C) class embeddings, the seen indices.
            upsample: resize to (img_size, img_size); False returns the decoders' (h, w)
                logits (training: the loss upsamples them chunk by chunk).

        Returns:
            pred_masks: (B, K, img_size, img_size) logits, or (B, K, h, w).
        """
        features, text = inputs.features, inputs.text
        global_emb = features.global_emb
        B = global_emb.shape[0]
        h, w = features.dense.shape[-2:]
        text = text.to(global_emb.dtype)
        text_b = text.unsqueeze(0).expand(B, -1, -1)
        q_in = torch.cat([global_emb.unsqueeze(1) * text_b, text_b], dim=-1)  # (B, K, 2C)
        total = None
        for j, stage in enumerate(self.cascade_stages):
            name = self._weight_names[j]
            if name is None:
                mem = features.map(stage[0])
            else:
                weights = getattr(self, name).to(global_emb.dtype)
                mem = sum(weights[k] * features.map(i) for k, i in enumerate(stage))
            mem = mem.flatten(2).transpose(1, 2)  # (B, N, C)
            logits = self.cascade_decoders[j](self.q_projs[j](q_in), mem)
            total = logits if total is None else total + logits
        masks = total.reshape(B, -1, h, w)
        if upsample and (h, w) != (self.image_size, self.image_size):
            masks = F.interpolate(masks, size=(self.image_size, self.image_size), mode='bilinear',
                                  align_corners=False)
        return masks

    def semantic_inference(self, pred_masks: torch.Tensor, seen: Sequence[int],
                           inplace: bool = False) -> torch.Tensor:
        """sigmoid scores, minus ``calibration`` on the ``seen`` classes (inductive setting).

        ``inplace``: overwrite ``pred_masks`` when it is float32 (the caller's own tensor).
        """
        scores = pred_masks.float()
        scores = scores.sigmoid_() if inplace else scores.sigmoid()
        if not self.self_training and self.calibration and len(seen):
            bias = torch.zeros(scores.shape[1], device=scores.device, dtype=scores.dtype)
            bias[list(seen)] = self.calibration
            bias = bias.view(1, -1, 1, 1)
            scores = scores.sub_(bias) if inplace else scores - bias
        return scores

    def forward_test(self, inputs: HeadInputs, img_metas, test_cfg) -> torch.Tensor:
        """Calibrated scores (B, K, img_size, img_size) of all classes (the segmentor's test
        path makes them a chunk of classes at a time with :meth:`chunk_scores`)."""
        return self.semantic_inference(self.forward(inputs), inputs.seen)

    def chunk_scores(self, logits: torch.Tensor, k0: int, k1: int, seen: Sequence[int],
                     out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Calibrated scores (B, k1 - k0, img_size, img_size) of classes [k0, k1) from the
        decoders' logits (B, K, h, w) (``forward(..., upsample=False)``).

        The resize and the sigmoid act per class channel: the values are those of
        :meth:`forward_test` for these classes, bit for bit. ``out``: a float32 tensor of the
        result's shape to write the upsampled scores into (float32 logits only).
        """
        masks = logits[:, k0:k1]
        size = (self.image_size, self.image_size)
        if tuple(masks.shape[-2:]) != size:
            masks = masks.contiguous()
            if logits.dtype == torch.float32:
                # ``F.interpolate``'s values, bit for bit, made faster for the decoders' 16x
                # factor; into the caller's buffer if given
                masks = upsample_bilinear_exact(masks, size, out=out)
            else:
                masks = F.interpolate(masks, size=size, mode='bilinear', align_corners=False)
        else:
            masks = masks.clone()
        # ``masks`` is this call's own tensor: the sigmoid and the calibration run in place
        # (no two more full-size temporaries)
        return self.semantic_inference(masks, [i - k0 for i in seen if k0 <= i < k1], inplace=True)

    # ------------------------------------------------------------------ training
    def pseudo_label(self, pred_masks: torch.Tensor, gt: torch.Tensor,
                     seen: Sequence[int]) -> torch.Tensor:
        """Fill pixels marked -1 with the argmax over the unseen classes of the detached scores.

        pred_masks: (B, K, h, w) logits over all classes; gt: (B, 1, H, W) long; seen: indices
        of the seen classes among the K.
        """
        gt = gt.clone()
        marked = gt == -1
        if not marked.any():
            return gt
        unseen = [i for i in range(pred_masks.shape[1]) if i not in set(seen)]
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

    def forward_train(self, inputs: HeadInputs, img_metas, gt_semantic_seg, train_cfg,
                      num_masks: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Loss dict; ``num_masks`` overrides the loss normaliser (gradient accumulation)."""
        pred_masks, gt = self.train_targets(inputs, gt_semantic_seg)
        return self.losses(pred_masks, gt, num_masks)

    def train_targets(self, inputs: HeadInputs, gt_semantic_seg: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The logits the loss sees (B, K, h, w) and the labels (B, 1, H, W) it compares them
        with: pixels marked -1 pseudo-labelled (self-training) or ignored."""
        # the decoders' low-resolution logits go to the loss, which upsamples them class chunk
        # by class chunk; the same values as upsampling here when img_size is the label's size
        pred_masks = self.forward(inputs, upsample=tuple(gt_semantic_seg.shape[-2:]) !=
                                  (self.image_size, self.image_size))
        gt = gt_semantic_seg
        if self.self_training:
            gt = self.pseudo_label(pred_masks, gt, inputs.seen)
        elif (gt == -1).any():
            gt = torch.where(gt == -1, torch.full_like(gt, self.ignore_index), gt)
        return pred_masks, gt

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
