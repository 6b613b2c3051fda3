"""``ATMSingleHeadSeg``: the cascade decoder bank and text-query classifier (paper §3.3-3.4).

Parameter names follow the published ``ATMSingleHeadSeg`` so its checkpoints load."""
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.utils.weight_init import constant_init, trunc_normal_init
from mmseg.models.builder import HEADS
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from ...utils.strict import strict_kwargs
from ..backbones.features import VisualFeatures
from ..losses import LossSum, SumLoss
from .cascade_decoder import CascadeDecoder

PUBLISHED_STAGES = ((0, 1, 2), (3, 4, 5), (-1, ))


def gaussian_weights(n: int, sigma: float = 1.0) -> torch.Tensor:
    """Neighbourhood Gaussian Aggregation init (n, ): exp(-0.5·((n-1-k)/σ)²), k = 0..n-1."""
    d = torch.arange(n - 1, -1, -1, dtype=torch.float32) / sigma
    return torch.exp(-0.5 * d**2)


# mode -> (name prefix of the per-stage weights, their init (n, sigma) -> (n, )); (None, None):
# a plain sum. Distinct names make a checkpoint of one mode fail strict loading in another.
AGGREGATIONS: Dict[str, Tuple[Optional[str], Optional[Callable[[int, float], torch.Tensor]]]] = {
    'gaussian': ('weights_s', gaussian_weights),  # published
    'learned': ('learned_weights_s', lambda n, sigma: torch.full((n, ), 1.0 / n)),
    'sum': (None, None),
}


class HeadInputs(NamedTuple):
    """What the segmentor hands to the head for one batch.

    Attributes:
        features: the image encoder's :class:`VisualFeatures`.
        text: (K, D) text embeddings of the K classes in play.
        seen: indices of the seen classes among the K (calibrated; never pseudo-labels).
    """
    features: VisualFeatures
    text: torch.Tensor
    seen: Sequence[int]


@HEADS.register_module()
@strict_kwargs
class ATMSingleHeadSeg(BaseDecodeHead):
    """Cascade of transformer decoders whose class queries come from text embeddings.

    Args:
        img_size: side of the square mask logits of ``forward`` (published: 512).
        in_channels: channels of the backbone maps (CLIP's output_dim), equal to embed_dims.
        embed_dims, num_layers, num_heads, dim_feedforward, dropout: each decoder's.
        cascade_stages: per decoder, the encoder ``levels`` it reads (-1: the last layer's
            dense map); ((-1, ), ) is a ZegCLIP-style single decoder.
        aggregation: how a stage's maps are combined, a key of :data:`AGGREGATIONS`.
        aggregation_sigma: σ of the 'gaussian' initial weights.
        calibration: subtracted from the seen classes' scores at inference (inductive).
        self_training: transductive setting (no calibration, pseudo-labels for pixels -1).
        loss_decode: a :class:`SumLoss` config, or a list of them.
        seen_idx, all_idx, use_stages, use_proj, crop_train: keys of the published configs,
            accepted and unused (the segmentor checks seen_idx / all_idx against its split).
    """

    def __init__(self, img_size: int, in_channels: int, embed_dims: int = 512,
                 num_layers: int = 3, num_heads: int = 8,
                 cascade_stages: Sequence[Sequence[int]] = PUBLISHED_STAGES,
                 aggregation: str = 'gaussian', aggregation_sigma: float = 1.0,
                 dim_feedforward: Optional[int] = None, dropout: float = 0.1,
                 calibration: float = 0.1, self_training: bool = False,
                 seen_idx: Optional[Sequence[int]] = None, all_idx: Optional[Sequence[int]] = None,
                 use_stages: Optional[int] = None, use_proj: bool = False,
                 crop_train: bool = False, **kwargs):
        kwargs.setdefault('channels', embed_dims)
        # BaseDecodeHead's default init_cfg is for its conv_seg, which this head deletes
        kwargs.setdefault('init_cfg', None)
        super().__init__(in_channels=in_channels, **kwargs)
        del self.conv_seg  # the text queries classify; published checkpoints have no conv_seg
        if in_channels != embed_dims:
            raise ValueError(f'in_channels ({in_channels}) must equal embed_dims ({embed_dims}): '
                             f'the decoders attend directly over the backbone maps')
        stages = tuple(tuple(int(i) for i in s) for s in cascade_stages)
        if not stages or any(len(s) == 0 for s in stages) or any(i < -1 for s in stages for i in s):
            raise ValueError(f'cascade_stages must be non-empty lists of level indices (>= 0) or '
                             f'-1 (the last layer), got {cascade_stages}')
        if aggregation not in AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {sorted(AGGREGATIONS)}, got '
                             f'{aggregation!r}')
        terms = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        for i, term in enumerate(terms):
            if not isinstance(term, SumLoss):
                where = 'loss_decode' + (f'[{i}]' if len(terms) > 1 else '')
                raise ValueError(
                    f'decode_head.{where}: {type(term).__name__} is not a loss of the cascade '
                    f'head, whose terms return a sum and its count (cascade_clip.models.losses.'
                    f'SumLoss, e.g. SegLossPlus); MMSeg\'s pixel losses return a mean of '
                    f'(B, K, H, W) class logits. See docs/extending.md to add a term')
        self.image_size = img_size
        self.embed_dims = embed_dims
        self.calibration = calibration
        self.self_training = self_training
        self.cascade_stages = stages
        self.aggregation = aggregation
        ffn = dim_feedforward or 4 * embed_dims
        self.cascade_decoders = nn.ModuleList(
            CascadeDecoder(num_layers, embed_dims, num_heads, ffn, dropout) for _ in stages)
        self.q_projs = nn.ModuleList(nn.Linear(2 * embed_dims, embed_dims) for _ in stages)
        self.score_resize = BilinearResize()  # no parameters
        prefix, init = AGGREGATIONS[aggregation]
        self._weight_names: List[Optional[str]] = []
        for s in stages:
            name = None
            if prefix is not None and len(s) > 1:  # numbered over the multi-map stages
                name = f'{prefix}{sum(n is not None for n in self._weight_names) + 1}'
                self.register_parameter(name, nn.Parameter(init(len(s), aggregation_sigma)))
            self._weight_names.append(name)

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

    def forward(self, inputs: HeadInputs, upsample: bool = True) -> torch.Tensor:
        """Mask logits of the K classes of ``inputs.text``: (B, K, img_size, img_size), or the
        decoders' (B, K, h, w) with ``upsample=False``."""
        features, text = inputs.features, inputs.text
        global_emb = features.global_emb
        B = global_emb.shape[0]
        h, w = features.dense.shape[-2:]
        text_b = text.to(global_emb.dtype).unsqueeze(0).expand(B, -1, -1)
        q_in = torch.cat([global_emb.unsqueeze(1) * text_b, text_b], dim=-1)  # (B, K, 2C)
        total = 0
        for j, stage in enumerate(self.cascade_stages):
            name = self._weight_names[j]
            weights = getattr(self, name).to(global_emb.dtype) if name else [1] * len(stage)
            mem = sum(weights[k] * features.map(i) for k, i in enumerate(stage))
            mem = mem.flatten(2).transpose(1, 2)  # (B, N, C)
            total = total + self.cascade_decoders[j](self.q_projs[j](q_in), mem)
        masks = total.reshape(B, -1, h, w)
        if upsample and (h, w) != (self.image_size, self.image_size):
            masks = F.interpolate(masks, size=(self.image_size, ) * 2, mode='bilinear',
                                  align_corners=False)
        return masks

    def semantic_inference(self, pred_masks: torch.Tensor, seen: Sequence[int],
                           inplace: bool = False) -> torch.Tensor:
        """Sigmoid scores (float32), minus ``calibration`` on the ``seen`` classes (inductive);
        ``inplace`` overwrites a float32 ``pred_masks``."""
        scores = pred_masks.float()
        scores = scores.sigmoid_() if inplace else scores.sigmoid()
        if not self.self_training and self.calibration and len(seen):
            bias = torch.zeros(scores.shape[1], device=scores.device, dtype=scores.dtype)
            bias[list(seen)] = self.calibration
            scores = scores.sub_(bias.view(1, -1, 1, 1)) if inplace else scores - bias.view(1, -1, 1, 1)
        return scores

    def forward_test(self, inputs: HeadInputs, img_metas, test_cfg) -> torch.Tensor:
        """Calibrated scores (B, K, img_size, img_size) of all classes at once."""
        return self.semantic_inference(self.forward(inputs), inputs.seen)

    def chunk_scores(self, logits: torch.Tensor, k0: int, k1: int,
                     seen: Sequence[int]) -> torch.Tensor:
        """Calibrated scores (B, k1 - k0, img_size, img_size) of classes [k0, k1) from the
        decoders' (B, K, h, w) logits: the values of :meth:`forward_test` for these classes."""
        masks = logits[:, k0:k1].float()
        if masks.shape[-2:] != (self.image_size, self.image_size):
            masks = self.score_resize(masks, self.image_size)
        else:
            masks = masks.clone()
        return self.semantic_inference(masks, [i - k0 for i in seen if k0 <= i < k1], inplace=True)

    def pseudo_label(self, pred_masks: torch.Tensor, gt: torch.Tensor,
                     seen: Sequence[int]) -> torch.Tensor:
        """``gt`` (B, 1, H, W) with its -1 pixels set to the arg-max over the unseen classes of
        the detached logits ``pred_masks`` (B, K, h, w) (sigmoid is monotonic)."""
        marked = gt == -1
        unseen = [i for i in range(pred_masks.shape[1]) if i not in set(seen)]
        if not marked.any() or not unseen:
            return gt.masked_fill(marked, self.ignore_index)
        with torch.no_grad():
            unseen_t = torch.as_tensor(unseen, device=pred_masks.device)
            scores = pred_masks.detach().index_select(1, unseen_t).float()
            pseudo = unseen_t[upsampled_argmax(scores, tuple(gt.shape[-2:])).unsqueeze(1)]
        return torch.where(marked, pseudo, gt)

    def forward_train(self, inputs: HeadInputs, img_metas, gt_semantic_seg: torch.Tensor,
                      train_cfg) -> Dict[str, Union[LossSum, torch.Tensor]]:
        """Loss terms and ``acc_seg`` of ``gt_semantic_seg`` (B, 1, H, W), whose -1 pixels
        are pseudo-labelled (self-training) or ignored."""
        pred_masks = self.forward(inputs, upsample=False)  # the loss upsamples chunk by chunk
        gt = gt_semantic_seg
        if self.self_training:
            gt = self.pseudo_label(pred_masks, gt, inputs.seen)
        else:
            gt = gt.masked_fill(gt == -1, self.ignore_index)
        return self.losses(pred_masks, gt)

    def losses(self, seg_logit: torch.Tensor,
               seg_label: torch.Tensor) -> Dict[str, Union[LossSum, torch.Tensor]]:
        """seg_logit (B, K, h, w) mask logits, seg_label (B, 1, H, W) -> every term of
        ``loss_decode`` and the pixel accuracy ``acc_seg`` (%)."""
        label = seg_label.squeeze(1)
        terms = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        out: Dict[str, Union[LossSum, torch.Tensor]] = {}
        for term in terms:
            for name, value in term(seg_logit, label, ignore_index=self.ignore_index).items():
                if name in out:
                    raise ValueError(f'two terms of decode_head.loss_decode are named {name!r}')
                out[name] = value
        with torch.no_grad():
            valid = label != self.ignore_index
            correct = (upsampled_argmax(seg_logit.detach(), tuple(label.shape[-2:])) == label)[valid]
            out['acc_seg'] = correct.float().mean() * 100 if correct.numel() else seg_logit.new_zeros(())
        return out


def bilinear_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n_out, n_in) weights of a 1-D bilinear resize (align_corners=False): row i holds the
    weights ``F.interpolate`` gives output i, taken from it by resizing the unit vectors."""
    eye = torch.eye(n_in, device=device, dtype=dtype).unsqueeze(0)
    return F.interpolate(eye, size=n_out, mode='linear', align_corners=False)[0].t()


class BilinearResize(nn.Module):
    """Bilinear resize (align_corners=False) as two matrix products: F.interpolate's weights,
    twice as fast as its kernel on the CPU (values equal to rounding)."""

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """x (..., h, w) -> (..., size, size)."""
        rows, cols = (bilinear_matrix(n, size, x.device, x.dtype) for n in x.shape[-2:])
        return rows @ x @ cols.t()


def upsampled_argmax(logits: torch.Tensor, size: Tuple[int, int], chunk: int = 16) -> torch.Tensor:
    """Arg-max over classes of ``logits`` (B, K, h, w) upsampled bilinearly to ``size``:
    (B, H, W) int64, ``chunk`` classes at a time (the first maximum on ties)."""
    best_val = best_idx = None
    for k0 in range(0, logits.shape[1], chunk):
        x = logits[:, k0:k0 + chunk].float()
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        val, idx = x.max(dim=1)
        if best_val is None:
            best_val, best_idx = val, idx + k0
        else:
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + k0, best_idx)
    return best_idx
