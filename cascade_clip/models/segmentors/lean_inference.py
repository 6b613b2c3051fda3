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

DEFAULT_CLASS_CHUNK = 4


class Workspace:
    """Scratch tensors kept by name between the chunks of one input.

    A tensor of several MiB freshly allocated is fresh memory from the system each time (the
    allocator hands large blocks back when they are freed), and faulting its pages in costs
    more than the arithmetic done on it: the canvas, each window's upsampled scores and the
    resize to the original size reuse one buffer each.
    """

    def __init__(self):
        self._store = {}

    def get(self, name: str, shape: Sequence[int], dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape`` (the previous contents of ``name``)."""
        n = 1
        for d in shape:
            n *= int(d)
        t = self._store.get(name)
        if t is None or t.numel() < n or t.dtype != dtype or t.device != device:
            t = torch.empty(n, dtype=dtype, device=device)
            self._store[name] = t
        return t[:n].view(tuple(shape))


# scores of classes [k0, k1) of every input of one decoder call:
# (logits, k0, k1, (h, w), workspace) -> (n, k, h, w)
CropScores = Callable[[torch.Tensor, int, int, Tuple[int, int], Optional[Workspace]], torch.Tensor]


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
        crop_scores: (logits, k0, k1, (h, w), workspace) -> the calibrated scores
            (n, k1 - k0, h, w) of those classes at a window's size, as the segmentor's
            ``encode_decode`` makes them (``workspace``: where it may keep its scratch tensors).
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
        # NaN-free logits give NaN-free scores (bilinear weights are finite, the sigmoid maps
        # +-inf to 1 / 0); an inf can give NaN (0 * inf), so only finite logits skip the test
        self.finite = all(bool(torch.isfinite(lg).all()) for lg, _ in self.pieces)
        self.count = None
        if average:
            count = torch.zeros((batch_size, 1) + self.input_hw, device=self.device)
            for _, boxes in self.pieces:
                for y1, x1, y2, x2 in boxes:
                    count[:, :, y1:y2, x1:x2] += 1
            self.count = count
        self.workspace = Workspace()

    @property
    def out_hw(self) -> Tuple[int, int]:
        return tuple(self.rescale[1]) if self.rescale else self.input_hw

    def scores(self, k0: int, k1: int) -> torch.Tensor:
        """(B, k1 - k0, H, W) float32 scores of classes [k0, k1), flip undone.

        Unless flipped, the result is a buffer of this source's :class:`Workspace` that the
        next call overwrites: use it (or copy it) before asking for other classes.
        """
        B = self.batch_size
        ws = self.workspace
        if self.average:
            preds = ws.get('canvas', (B, k1 - k0) + self.input_hw, torch.float32, self.device)
            preds.zero_()
            for logits, boxes in self.pieces:
                y1, x1, y2, x2 = boxes[0]  # every window of a call has one size
                crop = self.crop_scores(logits, k0, k1, (y2 - y1, x2 - x1), ws).float()
                for j, (y1, x1, y2, x2) in enumerate(boxes):
                    preds[:, :, y1:y2, x1:x2] += crop[j * B:(j + 1) * B]
            preds.div_(self.count)
        else:
            (logits, boxes), = self.pieces
            y1, x1, y2, x2 = boxes[0]
            preds = self.crop_scores(logits, k0, k1, (y2 - y1, x2 - x1), ws).float()
        if self.rescale:
            (h, w), ori = self.rescale
            preds = preds[:, :, :h, :w]
            if tuple(preds.shape[2:]) != tuple(ori):
                # (a resize to the same size is skipped: its weights are exactly 1 and 0)
                # MMSeg's ``resize`` (F.interpolate, bilinear) written into the workspace
                out = ws.get('rescale', preds.shape[:2] + tuple(ori), preds.dtype, self.device)
                preds = torch.ops.aten.upsample_bilinear2d.out(
                    preds, list(ori), self.align_corners, None, None, out=out)
        if self.flip:
            preds = preds.flip(dims=(3, ) if self.flip == 'horizontal' else (2, ))
        return preds


def _chunks(num_classes: int, chunk: int):
    return [(k0, min(k0 + chunk, num_classes)) for k0 in range(0, num_classes, chunk)]


def running_argmax(chunks, num_classes: int, chunk: int,
                   nan_aware: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Labels (B, H, W) int64 and their values (B, H, W) over the chunks' values.

    ``chunks(k0, k1)`` gives the (B, k, H, W) values of classes [k0, k1); the result is
    ``argmax`` over all classes at once: equal values keep the lowest class index, and a NaN
    beats every number (the first NaN wins). ``nan_aware=False`` is for callers that know
    the values are NaN-free (infinities are fine): it takes a faster route.

    The classes are compared one channel at a time (a contiguous (B, H, W) plane each):
    ``argmax`` over dim 1 of a (B, k, H, W) tensor is a strided reduction that runs several
    times slower on the CPU than these elementwise passes.
    """
    if not nan_aware and num_classes <= 2**24:
        return _running_argmax_finite(chunks, num_classes, chunk)
    planes = _class_planes(chunks, num_classes, chunk)
    k, v = next(planes)
    best_val = v.clone()
    best_idx = torch.full(v.shape, k, dtype=torch.int32, device=v.device)
    best_nan = torch.isnan(v) if nan_aware else None
    better = torch.empty(v.shape, dtype=torch.bool, device=v.device)
    for k, v in planes:
        torch.gt(v, best_val, out=better)  # strict: an earlier class wins a tie
        if nan_aware:
            v_nan = torch.isnan(v)
            better |= v_nan & ~best_nan
            best_nan |= v_nan
        best_idx.masked_fill_(better, k)
        torch.where(better, v, best_val, out=best_val)
    return best_idx.long(), best_val


def _class_planes(chunks, num_classes: int, chunk: int):
    """(class index, its (B, H, W) values) for every class in order, a chunk asked at a time
    (the next chunk only once the previous one's planes have been used)."""
    for k0, k1 in _chunks(num_classes, chunk):
        values = chunks(k0, k1)
        for c in range(values.shape[1]):
            yield k0 + c, values[:, c]


def _running_argmax_finite(chunks, num_classes: int,
                           chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`running_argmax` of NaN-free values, with arithmetic passes only.

    ``masked_fill_`` and ``where`` with a boolean mask are several times slower on the CPU
    than float arithmetic, and at a few megapixels per class plane they were most of the
    label time. Here the comparison is written as 1.0 / 0.0 and the index kept as a float
    (exact below 2**24): the classes come in increasing order, so ``c * (v > best)`` is c
    where class c is strictly better and 0 elsewhere, and the running maximum of that is the
    first index of the maximum. Without NaN, ``maximum(v, best)`` is ``where(v > best, v,
    best)``.
    """
    planes = _class_planes(chunks, num_classes, chunk)
    k, v = next(planes)
    best_val = v.clone()
    best_idx = torch.full(v.shape, float(k), dtype=torch.float32, device=v.device)
    better = torch.empty(v.shape, dtype=torch.float32, device=v.device)
    for k, v in planes:
        torch.gt(v, best_val, out=better)  # strict: an earlier class wins a tie
        better.mul_(k)
        torch.maximum(best_idx, better, out=best_idx)
        torch.maximum(v, best_val, out=best_val)
    return best_idx.long(), best_val


def labels_and_top(source: ScoreSource, chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Arg-max labels (B, H, W) and the chosen class's score (B, H, W) of one input."""
    return running_argmax(source.scores, source.num_classes, chunk, nan_aware=not source.finite)


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

    # finite scores give finite averaged probabilities (each sum of exponentials is >= 1)
    labels, _ = running_argmax(averaged, K, chunk, nan_aware=not all(s.finite for s in sources))
    return labels
