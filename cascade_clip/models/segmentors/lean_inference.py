"""Test-time label maps from the decoders' low-resolution logits, a chunk of classes at a time.

The full-resolution scores of an input are (B, K, H, W) floats: with hundreds of classes and
photos of several megapixels they no longer fit in memory. Every step after the decoders acts
on each class channel on its own (bilinear resizes, the sigmoid and its calibration, the
sliding-window sum and average, the flip), so the scores of classes [k0, k1) can be produced
from the decoders' (B, K, h, w) logits alone, by the same operations in the same order on a
narrower tensor: the same values, bit for bit. A :class:`ScoreSource` does that for one test
input; the functions below keep a running maximum and arg-max over the chunks (labels), fill
the full scores only when they are asked for, or average the softmax of several augmentations
in three chunked passes.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.ops import resize

DEFAULT_CLASS_CHUNK = 32

# scores of classes [k0, k1) of every input of one decoder call: (k0, k1) -> (n, k, h, w)
CropScores = Callable[[torch.Tensor, int, int, Tuple[int, int]], torch.Tensor]


def class_chunk(test_cfg) -> int:
    """``test_cfg.class_chunk``: classes whose full-resolution scores are held at a time."""
    chunk = test_cfg.get('class_chunk', DEFAULT_CLASS_CHUNK)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f'test_cfg.class_chunk must be a positive integer (classes scored at a '
                         f'time at full resolution), got {chunk!r}')
    return chunk


class ScoreSource:
    """Calibrated class scores of one test input at the output resolution, made on demand for
    a range of classes from the decoders' low-resolution logits.

    Args:
        pieces: the decoder calls of the input, in order: (logits (n, K, h, w), boxes) with
            ``boxes`` the (y1, x1, y2, x2) window of each group of ``batch_size`` rows of
            ``logits`` in the (padded) input (whole mode: one box covering the input).
        batch_size: images per box (rows of ``logits`` per box).
        input_hw: (H, W) of the network input (the sliding-window canvas).
        crop_scores: (logits, k0, k1, (h, w)) -> the calibrated scores (n, k1 - k0, h, w) of
            those classes at a window's size, as the segmentor's ``encode_decode`` makes them.
        average: sliding-window average (divide the canvas by the window count).
        rescale: ((img_h, img_w), (ori_h, ori_w)): crop the canvas to the resized image, then
            resize it to the original size (None: the canvas as it is).
        flip: 'horizontal' / 'vertical' to undo the test-time flip, or None.
    """

    def __init__(self, pieces: Sequence[Tuple[torch.Tensor, Sequence[Tuple[int, int, int, int]]]],
                 batch_size: int, input_hw: Tuple[int, int], crop_scores: CropScores,
                 average: bool, rescale: Optional[Tuple[Tuple[int, int], Tuple[int, int]]],
                 flip: Optional[str], align_corners: bool):
        self.pieces = list(pieces)
        self.batch_size = batch_size
        self.input_hw = tuple(input_hw)
        self.crop_scores = crop_scores
        self.average = average
        self.rescale = rescale
        self.flip = flip
        self.align_corners = align_corners
        logits = self.pieces[0][0]
        self.num_classes = logits.shape[1]
        self.device = logits.device
        self.count = None
        if average:
            count = torch.zeros((batch_size, 1) + self.input_hw, device=self.device)
            for _, boxes in self.pieces:
                for y1, x1, y2, x2 in boxes:
                    count[:, :, y1:y2, x1:x2] += 1
            self.count = count

    @property
    def out_hw(self) -> Tuple[int, int]:
        return tuple(self.rescale[1]) if self.rescale else self.input_hw

    def scores(self, k0: int, k1: int) -> torch.Tensor:
        """(B, k1 - k0, H, W) float32 scores of classes [k0, k1), flip undone."""
        B = self.batch_size
        if self.average:
            preds = torch.zeros((B, k1 - k0) + self.input_hw, device=self.device)
            for logits, boxes in self.pieces:
                y1, x1, y2, x2 = boxes[0]  # every window of a call has one size
                crop = self.crop_scores(logits, k0, k1, (y2 - y1, x2 - x1)).float()
                for j, (y1, x1, y2, x2) in enumerate(boxes):
                    preds[:, :, y1:y2, x1:x2] += crop[j * B:(j + 1) * B]
            preds = preds / self.count
        else:
            (logits, boxes), = self.pieces
            y1, x1, y2, x2 = boxes[0]
            preds = self.crop_scores(logits, k0, k1, (y2 - y1, x2 - x1)).float()
        if self.rescale:
            (h, w), ori = self.rescale
            preds = preds[:, :, :h, :w]
            if tuple(preds.shape[2:]) != tuple(ori):
                # (a resize to the same size is skipped: its weights are exactly 1 and 0)
                preds = resize(preds, size=ori, mode='bilinear', align_corners=self.align_corners,
                               warning=False)
        if self.flip:
            preds = preds.flip(dims=(3, ) if self.flip == 'horizontal' else (2, ))
        return preds


def _chunks(num_classes: int, chunk: int):
    return [(k0, min(k0 + chunk, num_classes)) for k0 in range(0, num_classes, chunk)]


def _first_argmax(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(max, first index of the max) over dim 1 of (B, k, H, W), as ``argmax`` breaks ties."""
    idx = x.argmax(dim=1, keepdim=True)
    return x.gather(1, idx).squeeze(1), idx.squeeze(1)


def running_argmax(chunks, num_classes: int, chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Labels (B, H, W) int64 and their values (B, H, W) over the chunks' values.

    ``chunks(k0, k1)`` gives the (B, k, H, W) values of classes [k0, k1); equal values keep the
    lowest class index, as an arg-max over all classes at once does.
    """
    best_val = best_idx = None
    for k0, k1 in _chunks(num_classes, chunk):
        val, idx = _first_argmax(chunks(k0, k1))
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val  # strict: an earlier chunk wins a tie
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + k0, best_idx)
    return best_idx, best_val


def labels_and_top(source: ScoreSource, chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Arg-max labels (B, H, W) and the chosen class's score (B, H, W) of one input."""
    return running_argmax(source.scores, source.num_classes, chunk)


def all_scores(source: ScoreSource, chunk: int) -> torch.Tensor:
    """The full (B, K, H, W) scores, filled chunk by chunk (no larger temporary)."""
    out = None
    for k0, k1 in _chunks(source.num_classes, chunk):
        s = source.scores(k0, k1)
        if out is None:
            out = s.new_empty((s.shape[0], source.num_classes) + tuple(s.shape[2:]))
        out[:, k0:k1] = s
    return out


def averaged_softmax_labels(sources: List[ScoreSource], chunk: int) -> torch.Tensor:
    """Arg-max (B, H, W) of the softmax over classes averaged over augmentations, as MMSeg's
    ``aug_test``, a chunk of classes at a time.

    Per augmentation: the maximum over the classes, then the sum of exp(score - max) in class
    order (two passes); then for each chunk the averaged probabilities
    exp(score - max) / sum and their running arg-max.
    """
    K = sources[0].num_classes
    stats = []
    for src in sources:
        m = None
        for k0, k1 in _chunks(K, chunk):
            cm = src.scores(k0, k1).amax(dim=1, keepdim=True)
            m = cm if m is None else torch.maximum(m, cm)
        s = torch.zeros_like(m)
        for k0, k1 in _chunks(K, chunk):
            e = torch.exp(src.scores(k0, k1) - m)
            for c in range(e.shape[1]):  # class order, as the softmax kernel sums
                s += e[:, c:c + 1]
        stats.append((m, s))

    def averaged(k0, k1):
        acc = None
        for src, (m, s) in zip(sources, stats):
            p = torch.exp(src.scores(k0, k1) - m) / s
            acc = p if acc is None else acc.add_(p)
        return acc / len(sources)

    labels, _ = running_argmax(averaged, K, chunk)
    return labels
