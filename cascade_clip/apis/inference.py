"""Python API: build a model, set its vocabulary to any class names, segment images.

    from cascade_clip.apis import init_model, set_vocabulary, segment_image
    model = init_model('configs/coco_171/...multi.py', 'cascade_clip_coco.pth', device='cpu')
    set_vocabulary(model, ['cat', 'sofa', 'window'])
    labels, scores = segment_image(model, 'photo.jpg')   # (H, W) int64, (K, H, W) float32
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.parallel import collate, scatter
from mmcv.runner import load_checkpoint
from mmcv.utils import Config
from mmseg.datasets.builder import DATASETS
from mmseg.datasets.pipelines import Compose
from mmseg.models import build_segmentor

from ..clip.templates import MULTI_TEMPLATES, SINGLE_TEMPLATE
from ..clip.text_embeddings import compute_text_embeddings
from ..utils.visualize import default_palette


def check_class_names(class_names: Sequence[str], source: Optional[str] = None) -> list:
    """Stripped class names; ValueError for an empty list, empty names or duplicates
    (``source``, e.g. a file name, is named in the message)."""
    names = [str(n).strip() for n in class_names]
    if not names or not all(names):
        where = f' from {source}' if source else ''
        raise ValueError(f'the class list{where} is empty (or has empty names)')
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        where = f' in {source}' if source else ''
        raise ValueError(f'duplicate class names{where}: {dup}')
    return names


def config_classes(cfg: Config) -> Optional[list]:
    """Class names of the config's test dataset (``classes=`` or the dataset type's CLASSES)."""
    test = cfg.data.test
    if test.get('classes'):
        return list(test.classes)
    ds = DATASETS.get(test.get('type', ''))
    return list(ds.CLASSES) if ds is not None and ds.CLASSES is not None else None


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               class_names: Optional[Sequence[str]] = None,
               seen: Optional[Sequence[int]] = None):
    """Build a Cascade-CLIP model from a config (and checkpoint) on ``device``.

    Without ``class_names`` the vocabulary is the config's dataset; a checkpoint trained with
    another number of classes then needs ``class_names``.
    """
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
    cfg.model.pretrained = None
    cfg.model.train_cfg = None
    names = config_classes(cfg)
    custom_vocab = class_names is not None
    if custom_vocab:
        class_names = check_class_names(class_names)
        # the embeddings are computed from the names with the checkpoint's text encoder
        cfg.model.load_text_embedding = None
    if cfg.model.get('class_names') is None and names is not None:
        cfg.model.class_names = names
    model = build_segmentor(cfg.model, test_cfg=cfg.get('test_cfg'))
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        trained = (ckpt.get('meta') or {}).get('CLASSES')
        if not custom_vocab and trained is not None and names is not None and len(trained) != len(names):
            raise ValueError(
                f'checkpoint {checkpoint} was trained with {len(trained)} classes but the config '
                f'{getattr(config, "filename", config)} describes {len(names)}: give the vocabulary '
                f'(class_names / --classes)')
    model.cfg = cfg
    model.to(device).eval()
    if custom_vocab:
        set_vocabulary(model, class_names, seen)
    else:
        model.CLASSES = tuple(model.class_names or [str(i) for i in range(model.num_classes)])
        model.PALETTE = default_palette(len(model.CLASSES))
    return model


def set_vocabulary(model, class_names: Sequence[str], seen: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Make ``model`` segment ``class_names``: embeddings computed once with its text encoder.

    Args:
        seen: indices of the classes treated as "seen" by the inductive calibration (which
            subtracts ``calibration`` from their scores); default all, i.e. no relative shift.

    Returns:
        (K, D) text embeddings now cached in the model.
    """
    names = check_class_names(class_names)
    k = len(names)
    seen = list(range(k)) if seen is None else sorted(int(i) for i in seen)
    if any(not 0 <= i < k for i in seen):
        raise ValueError(f'seen indices {seen} are outside the {k} classes')
    templates = MULTI_TEMPLATES if model.multi_prompts else (SINGLE_TEMPLATE, )
    emb = compute_text_embeddings(model.text_encoder, names, templates, model.context_length)
    model.load_text_embedding = None
    model.set_class_embeddings(emb)
    model.class_names = names
    model.both_class = list(range(k))
    model.base_class = seen
    model.novel_class = [i for i in range(k) if i not in set(seen)]
    model.num_classes = model.out_channels = k
    model.decode_head.seen_idx = seen
    model.decode_head.all_idx = list(range(k))
    model.CLASSES = tuple(names)
    model.PALETTE = default_palette(k)
    return emb


class _LoadArray:
    """First pipeline step for an in-memory image (H, W, 3) BGR uint8."""

    def __call__(self, results):
        img = results['img']
        results.update(filename=None, ori_filename=None, img_shape=img.shape, ori_shape=img.shape)
        return results


def read_image(img: Union[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 BGR image from a path or an array; clear errors for bad input."""
    if isinstance(img, str):
        if not osp.isfile(img):
            raise FileNotFoundError(f'image not found: {img}')
        arr = mmcv.imread(img)
        if arr is None:
            raise ValueError(f'cannot read image {img}: not an image file OpenCV can decode')
        return arr
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f'image array must be (H, W, 3), got {arr.shape}')
    return arr.astype(np.uint8)


@torch.no_grad()
def segment_image(model, img: Union[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Segment one image (path or (H, W, 3) BGR array) at its own size.

    Returns:
        labels: (H, W) int64 class indices into the model's vocabulary.
        scores: (K, H, W) float32 calibrated class scores (sigmoid, minus the seen-class
            calibration in the inductive setting).
    """
    arr = read_image(img)
    # the config's test pipeline with its loading step replaced by the in-memory image
    pipeline = Compose([_LoadArray()] + [dict(p) for p in model.cfg.data.test.pipeline[1:]])
    data = pipeline(dict(img=arr))
    data = collate([data], samples_per_gpu=1)
    device = next(model.parameters()).device
    target = -1 if device.type == 'cpu' else (device.index or 0)  # -1: MMCV's CPU target
    data = scatter(data, [target])[0]
    img_t = data['img'][0].to(device)
    metas = data['img_metas'][0]
    scores = model.predict_scores(img_t, metas, rescale=True)[0]
    labels = scores.argmax(0)
    return labels.cpu().numpy().astype(np.int64), scores.float().cpu().numpy()
