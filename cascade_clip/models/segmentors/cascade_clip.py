"""``CascadeCLIP``: the zero-shot segmentor (SPEC §6)."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.utils import ConfigDict, print_log
from mmseg.core import add_prefix
from mmseg.models import builder
from mmseg.models.builder import SEGMENTORS
from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.ops import resize
from mmseg.utils import get_root_logger

from ...clip.templates import MULTI_TEMPLATES, SINGLE_TEMPLATE
from ...clip.text_embeddings import compute_text_embeddings
from ...utils.visualize import draw_segmentation
from ..losses.mask_loss import check_label_range, count_masks, reduce_num_masks

EMBEDDING_HELP = ('make it with: python tools/build_text_embeddings.py --clip '
                  'clip_pretrain/ViT-B-16.pt --dataset <coco_stuff|voc20|context59> '
                  '--template <single|multi> --out {path}')


def check_class_splits(base_class: Sequence[int], novel_class: Sequence[int],
                       both_class: Sequence[int]) -> None:
    """Raise ValueError unless base and novel are disjoint and exactly cover both_class = 0..n-1."""
    n = len(both_class)
    if list(both_class) != list(range(n)):
        raise ValueError(f'both_class must be 0..{n - 1} in order (indices of all classes), '
                         f'got {list(both_class)[:10]}...')
    for name, split in (('base_class', base_class), ('novel_class', novel_class)):
        outside = sorted({int(i) for i in split if not 0 <= int(i) < n})
        if outside:
            raise ValueError(f'{name} has ids {outside} outside the range of all classes [0, {n})')
        if len(set(split)) != len(split):
            raise ValueError(f'{name} lists some ids twice: {list(split)}')
    overlap = sorted(set(base_class) & set(novel_class))
    if overlap:
        raise ValueError(f'base_class and novel_class overlap on ids {overlap}')
    missing = sorted(set(range(n)) - set(base_class) - set(novel_class))
    if missing:
        raise ValueError(f'base_class and novel_class do not cover all classes: ids {missing} '
                         f'are in neither')


@SEGMENTORS.register_module()
class CascadeCLIP(EncoderDecoder):
    """Zero-shot segmentor: CLIP image encoder + cascade head queried by class text embeddings.

    Args (besides EncoderDecoder's):
        text_encoder: config of the (frozen) text encoder.
        pretrained: CLIP file for the image encoder (and the text encoder unless
            ``pretrained_text`` is given).
        class_names: names of all classes (filled in from the dataset by the tools).
        base_class / novel_class / both_class: seen, unseen and all class ids.
        multi_prompts: 15-template text embeddings instead of "a photo of a {name}".
        self_training: transductive setting (pseudo-labels on unseen pixels, no calibration).
        ft_backbone: fine-tune the whole image encoder.
        exclude_key: substring(s) of the image-encoder parameter names that are trained when
            ``ft_backbone`` is False (published: 'prompt').
        load_text_embedding: .npy file of (num_classes, D) text embeddings.
        amp_dtype: None (fp32), 'bf16' (CPU and CUDA) or 'fp16' (CUDA): autocast of the image
            encoder and the head; LayerNorms, the loss and the score maps stay in fp32.
    """

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 text_encoder: dict,
                 pretrained: Optional[str] = None,
                 pretrained_text: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None,
                 context_length: int = 77,
                 base_class: Optional[Sequence[int]] = None,
                 novel_class: Optional[Sequence[int]] = None,
                 both_class: Optional[Sequence[int]] = None,
                 tau: float = 0.07,
                 multi_prompts: bool = False,
                 self_training: bool = False,
                 ft_backbone: bool = False,
                 exclude_key: Union[str, Sequence[str], None] = None,
                 load_text_embedding: Optional[str] = None,
                 amp_dtype: Optional[str] = None,
                 neck=None,
                 auxiliary_head=None,
                 train_cfg=None,
                 test_cfg=None,
                 init_cfg=None,
                 **kwargs):
        if both_class is None:
            if class_names is None:
                raise ValueError('give both_class or class_names')
            both_class = list(range(len(class_names)))
        both_class = [int(i) for i in both_class]
        base_class = both_class if base_class is None else [int(i) for i in base_class]
        novel_class = [] if novel_class is None else [int(i) for i in novel_class]
        check_class_splits(base_class, novel_class, both_class)
        if class_names is not None and len(class_names) != len(both_class):
            raise ValueError(f'{len(class_names)} class names for {len(both_class)} classes '
                             f'(both_class)')
        decode_head = dict(decode_head, self_training=self_training)
        # the head's class bookkeeping follows the split unless the config spells it out
        decode_head.setdefault('seen_idx', base_class)
        decode_head.setdefault('all_idx', both_class)
        decode_head.setdefault('num_classes', len(base_class))
        if isinstance(decode_head.get('loss_decode'), dict):
            decode_head['loss_decode'] = dict(decode_head['loss_decode'])
            decode_head['loss_decode'].setdefault('num_classes', len(base_class))
        if sorted(decode_head['seen_idx']) != sorted(base_class):
            raise ValueError(f'decode_head.seen_idx {list(decode_head["seen_idx"])} must equal '
                             f'base_class {base_class}')
        backbone = dict(backbone)
        if pretrained is not None:
            backbone['pretrained'] = pretrained
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            neck=neck,
            auxiliary_head=auxiliary_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)
        text_encoder = dict(text_encoder)
        if pretrained_text or pretrained:
            text_encoder['pretrained'] = pretrained_text or pretrained
        self.text_encoder = builder.build_backbone(text_encoder)

        self.class_names = list(class_names) if class_names is not None else None
        self.context_length = context_length
        self.base_class, self.novel_class, self.both_class = base_class, novel_class, both_class
        self.tau = tau
        self.multi_prompts = multi_prompts
        self.self_training = self_training
        self.ft_backbone = ft_backbone
        self.exclude_key = exclude_key
        self.load_text_embedding = load_text_embedding
        self.zero_shot = len(base_class) != len(both_class)
        self.amp_dtype = amp_dtype
        self._autocast_dtype()  # validate
        # set by MicroBatchOptimizerHook (gradient accumulation): see ``train_step``
        self.micro_batching = None
        # the head scores all classes at test time
        self.num_classes = self.out_channels = len(both_class)

        self.test_cfg = ConfigDict(self.test_cfg or {})
        self._check_cascade_layout()
        self._freeze(ft_backbone, exclude_key)
        # Cached tensors are plain attributes moved by ``_apply``, not buffers: MMCV's
        # save_checkpoint also writes non-persistent buffers, and checkpoints must keep the
        # published key set.
        self.label_map = self._build_label_map()
        if load_text_embedding:
            self.text_embeddings = self._read_text_embedding(load_text_embedding)
        else:
            self.text_embeddings = torch.empty(0, self.decode_head.embed_dims)
        # new text-encoder weights (init_weights, load_state_dict) invalidate computed embeddings
        self.register_load_state_dict_post_hook(lambda module, keys: module.reset_text_embeddings())

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for name in ('label_map', 'text_embeddings'):
            if isinstance(getattr(self, name, None), torch.Tensor):
                setattr(self, name, fn(getattr(self, name)))
        return self

    # ------------------------------------------------------------------ construction helpers
    def _check_cascade_layout(self) -> None:
        bb = self.backbone
        out_indices = getattr(bb, 'out_indices', None)
        if out_indices is None or not hasattr(self.decode_head, 'num_maps_required'):
            return
        if hasattr(bb, 'num_tokens'):  # VPT: one map per out index + the last layer's
            n_maps = len(out_indices) + 1
        else:
            n_maps = len(out_indices) if len(out_indices) > 1 else 1
        stages = self.decode_head.cascade_stages
        need = self.decode_head.num_maps_required
        uses_negative = any(i < 0 for s in stages for i in s)
        if n_maps < need or (not uses_negative and n_maps != need):
            raise ValueError(
                f'backbone out_indices {list(out_indices)} give {n_maps} maps, but the cascade '
                f'layout {[list(s) for s in stages]} of the decode head reads {need}: make '
                f'len(out_indices) + 1 match the layout')

    def _freeze(self, ft_backbone: bool, exclude_key) -> None:
        for p in self.text_encoder.parameters():
            p.requires_grad_(False)
        if ft_backbone:
            return
        keys = [exclude_key] if isinstance(exclude_key, str) else list(exclude_key or [])
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(any(k in name for k in keys))

    def _build_label_map(self) -> torch.Tensor:
        """Lookup table, dataset id (0..255) -> training id (SPEC §6)."""
        lut = torch.full((256, ), 255, dtype=torch.long)
        if self.self_training:
            lut[self.both_class] = torch.tensor(self.both_class)
            if self.novel_class:
                lut[self.novel_class] = -1
        elif self.zero_shot:
            lut[self.base_class] = torch.arange(len(self.base_class))
        else:
            lut[self.both_class] = torch.tensor(self.both_class)
        return lut

    def _read_text_embedding(self, path: str) -> torch.Tensor:
        if not osp.isfile(path):
            raise FileNotFoundError(f'text embedding file not found: {path}; '
                                    + EMBEDDING_HELP.format(path=path))
        arr = np.load(path)
        want = (len(self.both_class), self.decode_head.embed_dims)
        if arr.ndim != 2 or arr.shape[0] != want[0]:
            raise ValueError(f'text embeddings in {path} have shape {arr.shape}, expected '
                             f'({want[0]}, {want[1]}): one row per class of the dataset')
        if arr.shape[1] != want[1]:
            raise ValueError(f'text embeddings in {path} have width {arr.shape[1]}, but the head '
                             f'expects {want[1]} (embed_dims): shape should be {want}')
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    # ------------------------------------------------------------------ text embeddings
    def init_weights(self):
        super().init_weights()
        self.reset_text_embeddings()

    def reset_text_embeddings(self) -> None:
        """Forget embeddings computed by the text encoder (not those read from a file)."""
        if not self.load_text_embedding:
            self.text_embeddings = self.text_embeddings.new_empty(0, self.text_embeddings.shape[1])

    def set_class_embeddings(self, embeddings: torch.Tensor) -> None:
        self.text_embeddings = embeddings.detach().float().to(self.text_embeddings.device)

    def class_embeddings(self) -> torch.Tensor:
        """(num_classes, D) embeddings of all classes, computed once and cached."""
        if self.text_embeddings.shape[0] == 0:
            if self.class_names is None:
                raise ValueError('CascadeCLIP needs class_names (or load_text_embedding) to '
                                 'compute the class text embeddings')
            templates = MULTI_TEMPLATES if self.multi_prompts else (SINGLE_TEMPLATE, )
            emb = compute_text_embeddings(self.text_encoder, self.class_names, templates,
                                          self.context_length)
            print_log(f'computed text embeddings of {len(self.class_names)} classes '
                      f'({len(templates)} template(s))', logger=get_root_logger())
            self.text_embeddings = emb.to(self.text_embeddings.device)
        return self.text_embeddings

    def train(self, mode: bool = True):
        super().train(mode)
        self.text_encoder.eval()  # frozen, always in inference mode
        return self

    def _autocast_dtype(self) -> Optional[torch.dtype]:
        table = {None: None, 'fp32': None, 'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
                 'fp16': torch.float16, 'float16': torch.float16}
        if self.amp_dtype not in table:
            raise ValueError(f'amp_dtype must be one of None, "bf16", "fp16"; got {self.amp_dtype!r}')
        return table[self.amp_dtype]

    def autocast(self, device_type: str):
        """Autocast context for ``amp_dtype`` on ``device_type`` (a no-op for fp32)."""
        dtype = self._autocast_dtype()
        return torch.autocast(device_type=device_type, dtype=dtype or torch.bfloat16,
                              enabled=dtype is not None)

    # ------------------------------------------------------------------ training
    def remap_labels(self, gt: torch.Tensor) -> torch.Tensor:
        """Dataset ids -> training ids (inductive: base index / 255; transductive: unseen -> -1)."""
        check_label_range(gt, len(self.both_class), ignore_index=255)
        return self.label_map[gt.long().clamp(0, 255)]

    def forward_train(self, img, img_metas, gt_semantic_seg,
                      num_masks: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Loss dict; ``num_masks`` overrides the loss normaliser (micro-batches of a step)."""
        text = self.class_embeddings()
        if self.zero_shot and not self.self_training:
            text = text[self.base_class]
        gt = self.remap_labels(gt_semantic_seg)
        losses = dict()
        with self.autocast(img.device.type):
            x = self.extract_feat(img)
            loss_decode = self.decode_head.forward_train([x, text], img_metas, gt, self.train_cfg,
                                                         num_masks=num_masks)
        losses.update(add_prefix(loss_decode, 'decode'))
        return losses

    def train_step(self, data_batch: dict, optimizer, **kwargs) -> dict:
        """MMSeg's ``train_step``; with ``micro_batching`` (set by ``MicroBatchOptimizerHook``
        for ``GradientCumulativeOptimizerHook``), the loaded batch is split into K
        micro-batches that run one after the other.

        Every micro-batch's loss is normalised by the number of masks of the whole loaded
        batch, averaged over the ranks (``reduce_num_masks``): summed over the micro-batches
        (and averaged over the ranks) the gradient is exactly the loaded batch's. The first
        K - 1 are back-propagated here with the hook's ``backward`` (so their activations are
        freed before the next forward); the last one's loss is returned for the hook, which
        back-propagates it and steps. Logged losses are summed over the micro-batches (the
        loaded batch's loss), other values (``acc_seg``) averaged weighted by images.
        """
        mb = self.micro_batching
        if mb is None or mb.micro_batches <= 1:
            return super().train_step(data_batch, optimizer, **kwargs)
        img, metas, gt = data_batch['img'], data_batch['img_metas'], data_batch['gt_semantic_seg']
        B = img.shape[0]
        size = -(-B // mb.micro_batches)
        parts = [(s, min(s + size, B)) for s in range(0, B, size)]
        num_masks = reduce_num_masks(self.count_train_masks(img, metas, gt, parts), img.device)
        log_vars: Dict[str, float] = {}
        loss = None
        for i, (s, e) in enumerate(parts):
            losses = self(img=img[s:e], img_metas=metas[s:e], gt_semantic_seg=gt[s:e],
                          num_masks=num_masks)
            loss, part_vars = self._parse_losses(losses)
            for k, v in part_vars.items():
                w = 1.0 if 'loss' in k else (e - s) / B
                log_vars[k] = log_vars.get(k, 0.0) + w * v
            if i < len(parts) - 1:
                mb.backward(loss)
                loss = None
        return dict(loss=loss, log_vars=log_vars, num_samples=len(metas))

    def count_train_masks(self, img, img_metas, gt_semantic_seg, parts) -> int:
        """Number of (image, class) masks the loss sees in this batch (before the average over
        ranks). Transductive runs with unlabelled (-1) pixels: their pseudo-labels come from a
        forward pass without gradient of each micro-batch (with dropout active, another sample
        than the training pass's)."""
        gt = self.remap_labels(gt_semantic_seg)
        if not (self.self_training and (gt == -1).any()):
            return count_masks(gt, self.decode_head.ignore_index)
        total = 0
        text = self.class_embeddings()
        with torch.no_grad():
            for s, e in parts:
                g = gt[s:e]
                if (g == -1).any():
                    with self.autocast(img.device.type):
                        pred = self.decode_head.forward([self.extract_feat(img[s:e]), text], upsample=False)
                    g = self.decode_head.pseudo_label(pred, g)
                total += count_masks(g, self.decode_head.ignore_index)
        return total

    # ------------------------------------------------------------------ inference
    def encode_decode(self, img, img_metas) -> torch.Tensor:
        """Calibrated scores (B, num_classes, H, W) at the input's size."""
        text = self.class_embeddings()
        with self.autocast(img.device.type):
            x = self.extract_feat(img)
            out = self.decode_head.forward_test([x, text], img_metas, self.test_cfg)
        out = out.float()
        if out.shape[2:] != img.shape[2:]:
            out = resize(out, size=img.shape[2:], mode='bilinear', align_corners=self.align_corners)
        return out

    def slide_inference(self, img, img_meta, rescale) -> torch.Tensor:
        """Sliding-window scores, crops of one size run as batches (``test_cfg.crop_batch``)."""
        h_stride, w_stride = self.test_cfg.stride
        h_crop, w_crop = self.test_cfg.crop_size
        batch_size, _, h_img, w_img = img.size()
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        boxes = []
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, h_img)
                x2 = min(w_idx * w_stride + w_crop, w_img)
                boxes.append((max(y2 - h_crop, 0), max(x2 - w_crop, 0), y2, x2))
        preds = img.new_zeros((batch_size, self.num_classes, h_img, w_img), dtype=torch.float32)
        count = img.new_zeros((batch_size, 1, h_img, w_img), dtype=torch.float32)
        chunk = max(1, int(self.test_cfg.get('crop_batch', 4)) // batch_size)
        for i in range(0, len(boxes), chunk):
            group = boxes[i:i + chunk]  # every crop has size min(crop, image): one shape
            crops = torch.cat([img[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in group])
            logits = self.encode_decode(crops, img_meta).float()
            for j, (y1, x1, y2, x2) in enumerate(group):
                preds[:, :, y1:y2, x1:x2] += logits[j * batch_size:(j + 1) * batch_size]
                count[:, :, y1:y2, x1:x2] += 1
        preds = preds / count
        if rescale:
            resize_shape = img_meta[0]['img_shape'][:2]
            preds = preds[:, :, :resize_shape[0], :resize_shape[1]]
            preds = resize(preds, size=img_meta[0]['ori_shape'][:2], mode='bilinear',
                           align_corners=self.align_corners, warning=False)
        return preds

    def predict_scores(self, img, img_meta, rescale: bool = True) -> torch.Tensor:
        """Calibrated class scores (B, num_classes, H, W), flip undone; no softmax."""
        assert self.test_cfg.mode in ['slide', 'whole']
        if self.test_cfg.mode == 'slide':
            scores = self.slide_inference(img, img_meta, rescale)
        else:
            scores = self.whole_inference(img, img_meta, rescale)
        if img_meta[0].get('flip', False):
            direction = img_meta[0]['flip_direction']
            assert direction in ['horizontal', 'vertical']
            scores = scores.flip(dims=(3, ) if direction == 'horizontal' else (2, ))
        return scores

    def inference(self, img, img_meta, rescale):
        """As MMSeg's: softmax over the class scores (used to average in ``aug_test``)."""
        return F.softmax(self.predict_scores(img, img_meta, rescale), dim=1)

    def simple_test(self, img, img_meta, rescale=True) -> List[np.ndarray]:
        # argmax of the scores == argmax of their softmax: the softmax is skipped
        seg_pred = self.predict_scores(img, img_meta, rescale).argmax(dim=1)
        return list(seg_pred.cpu().numpy())

    def show_result(self, img, result, palette=None, win_name='', show=False, wait_time=0,
                    out_file=None, opacity=0.5):
        """Colour overlay of ``result[0]`` on ``img`` with a legend of the classes present."""
        img = mmcv.imread(img)
        names = list(self.CLASSES) if getattr(self, 'CLASSES', None) is not None else \
            list(self.class_names or [str(i) for i in range(self.num_classes)])
        palette = palette if palette is not None else getattr(self, 'PALETTE', None)
        out = draw_segmentation(img, np.asarray(result[0]), names, palette, opacity)
        if show:
            mmcv.imshow(out, win_name, wait_time)
        if out_file is not None:
            mmcv.imwrite(out, out_file)
        if not (show or out_file):
            return out
