"""Python API: ``init_model(config, checkpoint)``, ``model.set_vocabulary(names)``,
``segment_image(model, 'photo.jpg')``."""
import copy
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.parallel import collate, scatter
from mmcv.utils import Config
from mmseg.datasets.builder import DATASETS
from mmseg.datasets.pipelines import Compose
from mmseg.models import build_segmentor

from ..utils.config import read_config
from .checkpoint import load_weights


def config_classes(cfg: Config) -> Optional[list]:
    """Class names of the config's test dataset (``classes=`` or the dataset type's CLASSES)."""
    test = cfg.data.test
    if test.get('classes'):
        return list(test.classes)
    ds = DATASETS.get(test.get('type', ''))
    return list(ds.CLASSES) if ds is not None and ds.CLASSES is not None else None


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None,
               device: str = 'cpu', class_names: Optional[Sequence[str]] = None,
               seen: Optional[Sequence[int]] = None):
    """Build a Cascade-CLIP model from a config (and checkpoint) on ``device``, in eval mode.

    Without ``class_names`` the classes are the config's test dataset's, which the checkpoint
    must have been trained on; with them (and ``seen``) the text encoder embeds the names.
    """
    if isinstance(config, (str, os.PathLike)):
        cfg, name = read_config(str(config)), str(config)
    elif isinstance(config, Config):
        # a copy: the caller's config is left as it was (Config.copy() is a plain ConfigDict)
        cfg = copy.deepcopy(config)
        name = cfg.filename or 'the given config'
    else:
        raise TypeError(f'init_model: config must be a config file path or an mmcv.Config, '
                        f'got {type(config).__name__}')
    cfg.model.pretrained = None
    cfg.model.train_cfg = None
    if class_names is not None:
        cfg.model.load_text_embedding = None
    if cfg.model.get('class_names') is None:
        cfg.model.class_names = config_classes(cfg)
    model = build_segmentor(cfg.model, test_cfg=cfg.get('test_cfg'))
    if checkpoint is not None:
        load_weights(model, checkpoint, config=name, strict=True,
                     check_classes=class_names is None and not cfg.get('cross_dataset', False))
    model.cfg = cfg
    model.to(device).eval()
    if class_names is not None:
        model.set_vocabulary(class_names, seen)
    return model


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
def segment_image(model, img: Union[str, np.ndarray],
                  return_scores: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Segment one image (path or (H, W, 3) BGR array) at its own size.

    Returns:
        labels: (H, W) int64 class indices into the model's vocabulary.
        top: (H, W) float32 calibrated score of each pixel's class; with ``return_scores``
            the (K, H, W) float32 scores of all classes instead.
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
    if return_scores:
        scores = model.predict_scores(img_t, metas, rescale=True)[0]
        labels = scores.argmax(0)
        return labels.cpu().numpy().astype(np.int64), scores.float().cpu().numpy()
    labels, top = model.predict_labels(img_t, metas, rescale=True)
    return labels[0].cpu().numpy().astype(np.int64), top[0].float().cpu().numpy()
