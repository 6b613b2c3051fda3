"""Colour overlays of label maps with a legend of the classes present."""
from typing import Optional, Sequence

import cv2
import numpy as np


def default_palette(n: int, seed: int = 42) -> np.ndarray:
    """(n, 3) uint8 RGB colours, deterministic."""
    state = np.random.get_state()
    np.random.seed(seed)
    palette = np.random.randint(0, 255, size=(n, 3))
    np.random.set_state(state)
    return palette.astype(np.uint8)


def draw_segmentation(img: np.ndarray, seg: np.ndarray, class_names: Sequence[str],
                      palette: Optional[Sequence[Sequence[int]]] = None, opacity: float = 0.5,
                      legend: bool = True, min_size: int = 256) -> np.ndarray:
    """(s·H, s·W + legend width) uint8 BGR: a label map blended over an image, with a legend of
    the classes present by decreasing area.

    Args:
        img: (H, W, 3) uint8 BGR image; seg: (H, W) class indices (others stay uncoloured).
        class_names: the classes; palette: (K, 3) RGB colours (random if None).
        opacity: weight of the colours, in (0, 1].
        min_size: a shorter image is enlarged nearest-neighbour by the smallest integer factor
            s that reaches it (0: never).
    """
    if not 0 < opacity <= 1:
        raise ValueError(f'opacity must be in (0, 1], got {opacity}')
    if img.shape[:2] != seg.shape:
        raise ValueError(f'label map of size {seg.shape} for an image of size {img.shape[:2]}')
    n = len(class_names)
    palette = default_palette(n) if palette is None else np.asarray(palette, dtype=np.uint8)
    if len(palette) < n:
        raise ValueError(f'palette has {len(palette)} colours for {n} classes')
    bgr = palette[:, ::-1]
    scale = -(-min_size // max(seg.shape)) if max(seg.shape) < min_size else 1
    if scale > 1:  # nearest neighbour: every pixel becomes a scale x scale block
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
        seg = np.repeat(np.repeat(seg, scale, axis=0), scale, axis=1)
    valid = (seg >= 0) & (seg < n)
    out = img.astype(np.float32).copy()
    colour = bgr[np.where(valid, seg, 0)].astype(np.float32)
    out[valid] = out[valid] * (1 - opacity) + colour[valid] * opacity
    out = out.clip(0, 255).astype(np.uint8)
    if not legend:
        return out
    ids, counts = np.unique(seg[valid], return_counts=True)
    present = [int(i) for i in ids[np.argsort(-counts, kind='stable')]]
    return _add_legend(out, [class_names[i] for i in present], [tuple(int(c) for c in bgr[i]) for i in present])


def _add_legend(img: np.ndarray, names: Sequence[str], colours) -> np.ndarray:
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    row, pad, sw = 18, 6, 12
    widths = [cv2.getTextSize(n, font, scale, thick)[0][0] for n in names] or [0]
    panel_w = pad * 3 + sw + max(widths)
    h = max(img.shape[0], pad * 2 + row * len(names))
    canvas = np.full((h, img.shape[1] + panel_w, 3), 255, np.uint8)
    canvas[:img.shape[0], :img.shape[1]] = img
    x0 = img.shape[1] + pad
    for k, (name, colour) in enumerate(zip(names, colours)):
        y = pad + k * row
        cv2.rectangle(canvas, (x0, y + 2), (x0 + sw, y + 2 + sw), colour, -1)
        cv2.rectangle(canvas, (x0, y + 2), (x0 + sw, y + 2 + sw), (0, 0, 0), 1)
        cv2.putText(canvas, name, (x0 + sw + pad, y + 2 + sw - 1), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return canvas


def legend_names(seg: np.ndarray, class_names: Sequence[str]) -> list:
    """Names of the classes present in ``seg``, by decreasing area (the legend's order)."""
    n = len(class_names)
    vals = seg[(seg >= 0) & (seg < n)]
    ids, counts = np.unique(vals, return_counts=True)
    return [class_names[int(i)] for i in ids[np.argsort(-counts, kind='stable')]]
