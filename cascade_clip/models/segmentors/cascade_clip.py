"""``CascadeCLIP``: the zero-shot segmentor (paper §3; inductive and transductive, §4)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.utils import print_log
from mmseg.core import add_prefix
from mmseg.models import builder
from mmseg.models.builder import SEGMENTORS
from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.ops import resize
from mmseg.utils import get_root_logger

from ...clip.templates import MULTI_TEMPLATES, SINGLE_TEMPLATE
from ...clip.text_embeddings import compute_text_embeddings
from ...utils.files import read_npy, write_image
from ...utils.labels import check_label_values
from ...utils.strict import strict_kwargs
from ...utils.visualize import draw_segmentation
from ...utils.vocabulary_names import same_names
from ..decode_heads.cascade_head import HeadInputs
from ..losses import LossSum
from ..vocabulary import Vocabulary, check_embeddings, unit_rows
from .class_chunks import ClassScores, all_scores, averaged_softmax_labels, running_argmax
from .test_cfg import DEFAULT_CLASS_CHUNK, check_test_cfg

EMBEDDING_HELP = ('make it with: python tools/build_text_embeddings.py --clip '
                  'clip_pretrain/ViT-B-16.pt --dataset <coco_stuff|voc20|context59> '
                  '--template <single|multi> --out {path}')

# Model state-dict keys that a checkpoint may lack, each with the reason (load_weights).
OPTIONAL_STATE_KEYS = {
    'decode_head.loss_decode.criterion.empty_weight':
        'a buffer the published loss saves and never reads; files trimmed for inference omit it',
}

TEXT_ENCODER = 'the text encoder'  # Vocabulary.source of embeddings computed by the model


@SEGMENTORS.register_module()
@strict_kwargs
class CascadeCLIP(EncoderDecoder):
    """Zero-shot segmentor: CLIP image encoder + cascade head queried by class text embeddings.

    The classes are one :class:`Vocabulary`, changed only by :meth:`set_vocabulary`.

    Args (besides EncoderDecoder's):
        text_encoder: config of the frozen text encoder.
        pretrained: CLIP file of both encoders (of the text one unless ``pretrained_text``).
        class_names: names of all classes (the tools fill them in from the dataset).
        base_class, novel_class, both_class: seen, unseen and all class ids.
        multi_prompts: 15-template text embeddings instead of "a photo of a {name}".
        self_training: transductive setting (pseudo-labels on unseen pixels, no calibration).
        ft_backbone: fine-tune the whole image encoder.
        exclude_key: substring(s) of the image-encoder parameters trained otherwise ('prompt').
        load_text_embedding: .npy file of (num_classes, D) text embeddings.
        amp_dtype: None (fp32), 'bf16' or 'fp16' (CUDA only): autocast of the image encoder
            and the head; LayerNorms, the loss and the score maps stay in fp32.
        tau: key of the published configs, accepted and unused.
    """

    OPTIONAL_STATE_KEYS = OPTIONAL_STATE_KEYS

    def __init__(self, backbone: dict, decode_head: dict, text_encoder: dict,
                 pretrained: Optional[str] = None, pretrained_text: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None, context_length: int = 77,
                 base_class: Optional[Sequence[int]] = None,
                 novel_class: Optional[Sequence[int]] = None,
                 both_class: Optional[Sequence[int]] = None, tau: float = 0.07,
                 multi_prompts: bool = False, self_training: bool = False,
                 ft_backbone: bool = False, exclude_key: Union[str, Sequence[str], None] = None,
                 load_text_embedding: Optional[str] = None, amp_dtype: Optional[str] = None,
                 neck=None, auxiliary_head=None, train_cfg=None, test_cfg=None, init_cfg=None):
        vocabulary = Vocabulary.from_split(class_names, base_class, novel_class, both_class)
        seen = list(vocabulary.seen)
        decode_head = dict(decode_head, self_training=self_training)
        for key, want in (('seen_idx', seen), ('all_idx', list(range(len(vocabulary))))):
            given = decode_head.get(key)
            if given is not None and sorted(int(i) for i in given) != want:
                raise ValueError(f'decode_head.{key} {list(given)} must equal '
                                 f'{"base_class" if key == "seen_idx" else "both_class"} {want}')
        decode_head.setdefault('num_classes', len(seen))
        # the published loss's (unused) buffer has one entry per seen class + 1
        losses = decode_head.get('loss_decode')
        losses = [dict(c, num_classes=c.get('num_classes', len(seen))) if c.get('type') == 'SegLossPlus'
                  else c for c in (losses if isinstance(losses, (list, tuple)) else [losses])]
        decode_head['loss_decode'] = losses if isinstance(decode_head.get('loss_decode'), (list, tuple)) else losses[0]
        backbone = dict(backbone)
        if pretrained is not None:
            backbone['pretrained'] = pretrained
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck,
                         auxiliary_head=auxiliary_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         init_cfg=init_cfg)
        text_encoder = dict(text_encoder)
        if pretrained_text or pretrained:
            text_encoder['pretrained'] = pretrained_text or pretrained
        self.text_encoder = builder.build_backbone(text_encoder)

        self.context_length = context_length
        self.multi_prompts = multi_prompts
        self.self_training = self_training
        self.set_precision(amp_dtype)
        self.test_cfg = check_test_cfg(self.test_cfg)
        self._check_cascade_layout()
        self._freeze(ft_backbone, exclude_key)
        # without class names (a config built outside the tools) the embeddings come from a file
        self._named = class_names is not None
        if load_text_embedding:
            vocabulary = vocabulary.with_embeddings(
                self._read_text_embedding(load_text_embedding, vocabulary.names), load_text_embedding)
        # A plain attribute moved by ``_apply``, not a buffer: MMCV's save_checkpoint also
        # writes non-persistent buffers, and checkpoints must keep the published key set.
        self.vocabulary = vocabulary
        self._palette: Optional[np.ndarray] = None
        # new text-encoder weights (init_weights, load_state_dict) invalidate computed embeddings
        self.register_load_state_dict_post_hook(lambda module, keys: module.reset_text_embeddings())

    def _init_decode_head(self, decode_head: dict) -> None:
        # EncoderDecoder copies num_classes/out_channels from the head; here they are properties
        self.decode_head = builder.build_head(decode_head)
        self.align_corners = self.decode_head.align_corners

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if getattr(self, 'vocabulary', None) is not None:
            self.vocabulary = self.vocabulary.to(fn)
        return self

    @property
    def num_classes(self) -> int:
        """Classes scored at test time: the whole vocabulary."""
        return len(self.vocabulary)

    @property
    def out_channels(self) -> int:
        return len(self.vocabulary)

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.vocabulary.names

    @property
    def base_class(self) -> List[int]:
        return list(self.vocabulary.seen)

    @property
    def novel_class(self) -> List[int]:
        return list(self.vocabulary.unseen)

    @property
    def both_class(self) -> List[int]:
        return list(range(len(self.vocabulary)))

    @property
    def zero_shot(self) -> bool:
        return self.vocabulary.zero_shot

    @property
    def label_map(self) -> torch.Tensor:
        """(256,) dataset label -> training target (see ``Vocabulary.label_map``)."""
        return self.vocabulary.label_map(self.self_training)

    @property
    def CLASSES(self) -> Tuple[str, ...]:  # noqa: N802 (MMSeg's name)
        return self.vocabulary.names

    @CLASSES.setter
    def CLASSES(self, names) -> None:  # noqa: N802
        # MMSeg's tools assign the dataset's or a checkpoint's classes: they must be the vocabulary
        if names is None or same_names(names, self.vocabulary.names):
            return
        raise ValueError(f'CLASSES {list(names)[:8]}... ({len(names)}) differ from the model\'s '
                         f'vocabulary {list(self.vocabulary.names)[:8]}... ({len(self.vocabulary)}); '
                         f'change the vocabulary with model.set_vocabulary(names, seen)')

    @property
    def PALETTE(self) -> np.ndarray:  # noqa: N802
        return self._palette if self._palette is not None else self.vocabulary.palette

    @PALETTE.setter
    def PALETTE(self, palette) -> None:  # noqa: N802
        # display colours only (e.g. the dataset's); reset by set_vocabulary
        if palette is not None and len(palette) != len(self.vocabulary):
            raise ValueError(f'PALETTE has {len(palette)} colours for {len(self.vocabulary)} classes')
        self._palette = None if palette is None else np.asarray(palette, dtype=np.uint8)

    def set_vocabulary(self, names: Sequence[str], seen: Optional[Sequence[int]] = None,
                       embeddings: Optional[torch.Tensor] = None) -> Vocabulary:
        """Segment ``names`` from now on (the one way to change the classes); the new vocabulary.

        Args:
            names: the classes, in label order.
            seen: indices of the seen classes (calibrated down); default all (no relative shift).
            embeddings: (K, D) text embeddings of ``names``; default: by the text encoder.
        """
        vocabulary = Vocabulary(names, seen)
        if embeddings is None:
            embeddings, source = self.encode_names(vocabulary.names), TEXT_ENCODER
        else:
            source = 'set_vocabulary(embeddings=...)'
        embeddings = unit_rows(check_embeddings(embeddings, vocabulary.names,
                                                self.decode_head.embed_dims, source), source)
        device = next(self.parameters()).device
        self.vocabulary = vocabulary.with_embeddings(embeddings.to(device), source)
        self._named = True
        self._palette = None
        return self.vocabulary

    def _read_text_embedding(self, path: str, names: Sequence[str]) -> torch.Tensor:
        """(K, D) rows of the .npy file ``path`` for the classes ``names``, checked."""
        try:
            arr = read_npy(path, f'text embeddings ({len(names)}, {self.decode_head.embed_dims})')
        except FileNotFoundError:
            raise FileNotFoundError(f'text embedding file not found: {path}; '
                                    + EMBEDDING_HELP.format(path=path)) from None
        return unit_rows(check_embeddings(arr, names, self.decode_head.embed_dims, path), path)

    def encode_names(self, names: Sequence[str], progress=None) -> torch.Tensor:
        """(K, D) float32 unit-row text embeddings of ``names`` by the text encoder (not stored);
        ``progress(f)`` gets the fraction f in (0, 1] done after each batch of prompts."""
        templates = MULTI_TEMPLATES if self.multi_prompts else (SINGLE_TEMPLATE, )
        total = len(templates) * len(names)
        emb = compute_text_embeddings(self.text_encoder, names, templates, self.context_length,
                                      progress=None if progress is None else lambda n: progress(n / total))
        print_log(f'computed text embeddings of {len(names)} classes ({len(templates)} '
                  f'template(s))', logger=get_root_logger())
        return emb

    def init_weights(self):
        super().init_weights()
        self.reset_text_embeddings()

    def reset_text_embeddings(self) -> None:
        """Forget embeddings computed by the text encoder (not those read from a file)."""
        if self.vocabulary.source == TEXT_ENCODER:
            self.vocabulary = Vocabulary(self.vocabulary.names, self.vocabulary.seen)

    def class_embeddings(self) -> torch.Tensor:
        """(num_classes, D) embeddings of all classes, computed once and cached."""
        if self.vocabulary.embeddings is None:
            if not self._named:
                raise ValueError('CascadeCLIP needs class_names (or load_text_embedding) to '
                                 'compute the class text embeddings')
            emb = self.encode_names(self.vocabulary.names)
            device = next(self.parameters()).device
            self.vocabulary = self.vocabulary.with_embeddings(emb.to(device), TEXT_ENCODER)
        return self.vocabulary.embeddings

    def _check_cascade_layout(self) -> None:
        out_indices = getattr(self.backbone, 'out_indices', None)
        if out_indices is None:
            return
        need = self.decode_head.num_levels_required
        if len(out_indices) < need:
            raise ValueError(
                f'the cascade layout {[list(s) for s in self.decode_head.cascade_stages]} of the '
                f'decode head reads level {need - 1}, but the backbone returns {len(out_indices)} '
                f'levels (out_indices {list(out_indices)}); -1 is the last layer\'s dense map')

    def _freeze(self, ft_backbone: bool, exclude_key) -> None:
        for p in self.text_encoder.parameters():
            p.requires_grad_(False)
        if ft_backbone:
            return
        keys = [exclude_key] if isinstance(exclude_key, str) else list(exclude_key or [])
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(any(k in name for k in keys))

    def train(self, mode: bool = True):
        super().train(mode)
        self.text_encoder.eval()  # frozen, always in inference mode
        return self

    _AMP_DTYPES = {None: None, 'fp32': None, 'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
                   'fp16': torch.float16, 'float16': torch.float16}

    def set_precision(self, amp_dtype: Optional[str]) -> None:
        """Set the autocast precision (``amp_dtype``): None / 'fp32', 'bf16' or 'fp16'."""
        if amp_dtype not in self._AMP_DTYPES:
            raise ValueError(f'amp_dtype must be one of None, "fp32", "bf16", "fp16"; got {amp_dtype!r}')
        self.amp_dtype = amp_dtype

    def _autocast_dtype(self) -> Optional[torch.dtype]:
        return self._AMP_DTYPES[self.amp_dtype]

    def autocast(self, device_type: str):
        """Autocast context for ``amp_dtype`` on ``device_type`` (a no-op for fp32)."""
        dtype = self._autocast_dtype()
        return torch.autocast(device_type=device_type, dtype=dtype or torch.bfloat16,
                              enabled=dtype is not None)

    def remap_labels(self, gt: torch.Tensor) -> torch.Tensor:
        """Dataset ids (B, 1, H, W) -> training targets (inductive: index among the seen
        classes, unseen -> 255; transductive: unseen -> -1)."""
        check_label_values(gt, len(self.vocabulary), 255, 'gt_semantic_seg')
        return self.label_map.to(gt.device)[gt.long()]

    def _train_text(self) -> Tuple[torch.Tensor, Tuple[int, ...]]:
        """The (K', D) class embeddings of training and the indices of the seen ones among
        them: the seen classes only in the inductive zero-shot setting, all otherwise."""
        vocab = self.vocabulary
        text = self.class_embeddings()
        if vocab.zero_shot and not self.self_training:
            return text[list(vocab.seen)], tuple(range(len(vocab.seen)))
        return text, vocab.seen

    def forward_train(self, img, img_metas, gt_semantic_seg) -> Dict[str, Union[LossSum, torch.Tensor]]:
        """Loss terms (:class:`LossSum`) and metrics; gt_semantic_seg (B, 1, H, W) dataset ids."""
        text, seen = self._train_text()
        gt = self.remap_labels(gt_semantic_seg)
        with self.autocast(img.device.type):
            inputs = HeadInputs(self.extract_feat(img), text, seen)
            losses = self.decode_head.forward_train(inputs, img_metas, gt, self.train_cfg)
        return add_prefix(losses, 'decode')

    @staticmethod
    def _parse_losses(losses: dict) -> Tuple[torch.Tensor, dict]:
        """MMSeg's, with each :class:`LossSum` divided by its count in this batch alone."""
        return EncoderDecoder._parse_losses({k: v.value / max(v.count, 1) if isinstance(v, LossSum)
                                             else v for k, v in losses.items()})

    def train_step(self, data_batch: dict, optimizer, **kwargs) -> dict:
        """MMSeg's, plus ``loss_sums``: the terms as sums and counts, which
        ``AtomicIterBasedRunner`` averages over the micro-batches and processes of a step."""
        losses = self(**data_batch)
        loss, log_vars = self._parse_losses(losses)
        return dict(loss=loss, log_vars=log_vars, num_samples=len(data_batch['img_metas']),
                    loss_sums={k: v for k, v in losses.items() if isinstance(v, LossSum)})

    def decode_logits(self, img: torch.Tensor) -> torch.Tensor:
        """The decoders' logits (B, K, h, w) of ``img`` (B, 3, H, W), before any resize."""
        text = self.class_embeddings()
        H, W = img.shape[2:]
        patch = getattr(self.backbone, 'patch_size', 1)
        if H % patch or W % patch:  # zero-pad bottom / right: zero is the normalised mean
            img = F.pad(img, (0, -W % patch, 0, -H % patch))
        with self.autocast(img.device.type):
            inputs = HeadInputs(self.extract_feat(img), text, self.vocabulary.seen)
            return self.decode_head.forward(inputs, upsample=False)

    def window_scores(self, logits: torch.Tensor, k0: int, k1: int,
                      size: Tuple[int, int]) -> torch.Tensor:
        """Calibrated scores (B, k1 - k0, H, W) of classes [k0, k1) at an input's ``size`` from
        its :meth:`decode_logits`: the head's scores resized to the padded input, cropped."""
        H, W = size
        patch = getattr(self.backbone, 'patch_size', 1)
        padded = (H + -H % patch, W + -W % patch)
        out = self.decode_head.chunk_scores(logits, k0, k1, self.vocabulary.seen)
        if tuple(out.shape[2:]) != padded:
            out = resize(out, size=padded, mode='bilinear', align_corners=self.align_corners)
        return out[:, :, :H, :W]

    def encode_decode(self, img, img_metas) -> torch.Tensor:
        """Calibrated scores (B, K, H, W) of all classes at once, at the input's size."""
        return self.window_scores(self.decode_logits(img), 0, self.num_classes, tuple(img.shape[2:]))

    def class_scores(self, img, img_meta, rescale: bool, flip: bool = True,
                     mode: Optional[str] = None) -> ClassScores:
        """The decoders' logits of one test input (sliding windows, ``test_cfg.crop_batch``
        crops per call; or the whole image) as :class:`ClassScores` at the output size."""
        mode = mode or self.test_cfg.mode
        batch_size, _, h_img, w_img = img.size()
        if mode == 'slide':
            (h_stride, w_stride), (h_crop, w_crop) = self.test_cfg.stride, self.test_cfg.crop_size
            windows = []
            for h_idx in range(max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1):
                for w_idx in range(max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1):
                    y2 = min(h_idx * h_stride + h_crop, h_img)
                    x2 = min(w_idx * w_stride + w_crop, w_img)
                    windows.append((max(y2 - h_crop, 0), max(x2 - w_crop, 0), y2, x2))
            per_call = max(1, int(self.test_cfg.get('crop_batch', 4)) // batch_size)
            pieces = []
            for i in range(0, len(windows), per_call):
                group = windows[i:i + per_call]  # every window has size min(crop, image)
                crops = torch.cat([img[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in group])
                pieces.append((self.decode_logits(crops), group))
        else:
            pieces = [(self.decode_logits(img), [(0, 0, h_img, w_img)])]
        sizes = None
        if rescale:
            sizes = (tuple(img_meta[0]['img_shape'][:2]), tuple(img_meta[0]['ori_shape'][:2]))
        direction = img_meta[0]['flip_direction'] if flip and img_meta[0].get('flip') else None
        return ClassScores(pieces, batch_size, (h_img, w_img), self.window_scores,
                           average=mode == 'slide', rescale=sizes, flip=direction,
                           align_corners=self.align_corners)

    @property
    def class_chunk(self) -> int:
        """Classes whose full-resolution scores exist at a time (``test_cfg.class_chunk``)."""
        return self.test_cfg.get('class_chunk', DEFAULT_CLASS_CHUNK)

    def slide_inference(self, img, img_meta, rescale) -> torch.Tensor:
        """Sliding-window scores (B, K, H, W) (flip not undone)."""
        return all_scores(self.class_scores(img, img_meta, rescale, False, 'slide'), self.class_chunk)

    def whole_inference(self, img, img_meta, rescale) -> torch.Tensor:
        """Whole-image scores (B, K, H, W) (flip not undone)."""
        return all_scores(self.class_scores(img, img_meta, rescale, False, 'whole'), self.class_chunk)

    def predict_scores(self, img, img_meta, rescale: bool = True) -> torch.Tensor:
        """Calibrated class scores (B, K, H, W), flip undone (no softmax)."""
        return all_scores(self.class_scores(img, img_meta, rescale), self.class_chunk)

    def predict_labels(self, img, img_meta, rescale: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Labels (B, H, W) int64, the arg-max of :meth:`predict_scores`, and the chosen
        class's score (B, H, W), without a (B, K, H, W) tensor."""
        scores = self.class_scores(img, img_meta, rescale)
        return running_argmax(scores, scores.num_classes, self.class_chunk)

    def inference(self, img, img_meta, rescale):
        """As MMSeg's: the softmax (B, K, H, W) of the class scores."""
        return F.softmax(self.predict_scores(img, img_meta, rescale), dim=1)

    def simple_test(self, img, img_meta, rescale=True) -> List[np.ndarray]:
        return list(self.predict_labels(img, img_meta, rescale)[0].cpu().numpy())

    def aug_test(self, imgs, img_metas, rescale=True) -> List[np.ndarray]:
        """As MMSeg's: the arg-max of the softmax averaged over the augmentations."""
        assert rescale
        sources = [self.class_scores(img, meta, rescale) for img, meta in zip(imgs, img_metas)]
        return list(averaged_softmax_labels(sources, self.class_chunk).cpu().numpy())

    def show_result(self, img, result, palette=None, win_name='', show=False, wait_time=0,
                    out_file=None, opacity=0.5):
        """Colour overlay of ``result[0]`` on ``img`` with a legend of the classes present."""
        img = mmcv.imread(img)
        palette = palette if palette is not None else self.PALETTE
        out = draw_segmentation(img, np.asarray(result[0]), list(self.CLASSES), palette, opacity)
        if show:
            mmcv.imshow(out, win_name, wait_time)
        if out_file is not None:  # whole or not at all: no truncated overlay among the others
            write_image(out, out_file)
        if not (show or out_file):
            return out

