"""Test-time scores and labels from the decoders' logits, a chunk of classes at a time.

Every step after the decoders acts on each class channel alone, so memory grows with the image,
not with classes x pixels: a (B, K, H, W) tensor is made only when asked for."""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Window = Tuple[int, int, int, int]  # y1, x1, y2, x2 in the network input


class ClassScores:
    """Calibrated class scores of one test input at the output size, for any class range.

    Args:
        pieces: the decoder calls, as (logits (n·B, K, h, w), the window of each B rows).
        batch_size: B, the images of the input.
        input_hw: (H, W) of the network input (the sliding-window canvas).
        window_scores: (logits, k0, k1, (h, w)) -> calibrated scores (n·B, k1 - k0, h, w).
        average: divide by the number of windows covering each pixel (slide mode).
        rescale: ((img_h, img_w), (ori_h, ori_w)): crop, then resize to the original size.
        flip: 'horizontal' or 'vertical' to undo a test-time flip, or None.
    """

    def __init__(self, pieces: Sequence[Tuple[torch.Tensor, Sequence[Window]]], batch_size: int,
                 input_hw: Tuple[int, int],
                 window_scores: Callable[[torch.Tensor, int, int, Tuple[int, int]], torch.Tensor],
                 average: bool, rescale: Optional[Tuple[Tuple[int, int], Tuple[int, int]]],
                 flip: Optional[str], align_corners: bool):
        self.pieces = list(pieces)
        self.batch_size = batch_size
        self.input_hw = tuple(input_hw)
        self.window_scores = window_scores
        self.rescale = rescale
        self.flip = flip
        self.align_corners = align_corners
        self.num_classes = self.pieces[0][0].shape[1]
        self.count = None
        if average:
            self.count = self.pieces[0][0].new_zeros((batch_size, 1) + self.input_hw, dtype=torch.float32)
            for _, windows in self.pieces:
                for y1, x1, y2, x2 in windows:
                    self.count[:, :, y1:y2, x1:x2] += 1

    def __call__(self, k0: int, k1: int) -> torch.Tensor:
        """(B, k1 - k0, H, W) float32 scores of classes [k0, k1), flip undone."""
        B = self.batch_size
        if self.count is not None:
            canvas = self.count.new_zeros((B, k1 - k0) + self.input_hw)
            for logits, windows in self.pieces:
                y1, x1, y2, x2 = windows[0]  # the windows of one call have one size
                scores = self.window_scores(logits, k0, k1, (y2 - y1, x2 - x1))
                for j, (y1, x1, y2, x2) in enumerate(windows):
                    canvas[:, :, y1:y2, x1:x2] += scores[j * B:(j + 1) * B]
            scores = canvas.div_(self.count)
        else:
            (logits, (window, )), = self.pieces
            y1, x1, y2, x2 = window
            scores = self.window_scores(logits, k0, k1, (y2 - y1, x2 - x1)).float()
        if self.rescale:
            (h, w), ori = self.rescale
            scores = scores[:, :, :h, :w]
            if tuple(scores.shape[2:]) != tuple(ori):
                scores = F.interpolate(scores, size=tuple(ori), mode='bilinear',
                                       align_corners=self.align_corners)
        if self.flip:
            scores = scores.flip(dims=(3, ) if self.flip == 'horizontal' else (2, ))
        return scores


def _ranges(num_classes: int, chunk: int) -> List[Tuple[int, int]]:
    return [(k0, min(k0 + chunk, num_classes)) for k0 in range(0, num_classes, chunk)]


def running_argmax(chunks: Callable[[int, int], torch.Tensor], num_classes: int,
                   chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The arg-max (B, H, W) int64 over all classes of ``chunks(k0, k1)`` (B, k1 - k0, H, W)
    and the maximum (B, H, W), the lowest class winning a tie."""
    # one class plane at a time: an arg-max over dim 1 is a strided reduction, several times
    # slower on the CPU
    best_val = best_idx = None
    for k0, k1 in _ranges(num_classes, chunk):
        values = chunks(k0, k1)
        for c in range(values.shape[1]):
            v = values[:, c]
            if best_val is None:
                best_val, best_idx = v.clone(), torch.zeros(v.shape, dtype=torch.long, device=v.device)
                continue
            better = v > best_val
            best_idx.masked_fill_(better, k0 + c)
            torch.maximum(best_val, v, out=best_val)
    return best_idx, best_val


def all_scores(scores: ClassScores, chunk: int) -> torch.Tensor:
    """The full (B, K, H, W) scores, filled chunk by chunk."""
    out = None
    for k0, k1 in _ranges(scores.num_classes, chunk):
        s = scores(k0, k1)
        if out is None:
            out = s.new_empty((s.shape[0], scores.num_classes) + tuple(s.shape[2:]))
        out[:, k0:k1] = s
    return out


def averaged_softmax_labels(sources: List[ClassScores], chunk: int) -> torch.Tensor:
    """Arg-max (B, H, W) of the softmax over classes averaged over augmentations (MMSeg's
    ``aug_test``), in chunked passes."""
    K = sources[0].num_classes
    stats = []
    for src in sources:
        m = None
        for k0, k1 in _ranges(K, chunk):
            cm = src(k0, k1).amax(dim=1, keepdim=True)
            m = cm if m is None else torch.maximum(m, cm)
        s = torch.zeros_like(m)
        for k0, k1 in _ranges(K, chunk):
            s += torch.exp(src(k0, k1) - m).sum(dim=1, keepdim=True)
        stats.append((m, s))

    def averaged(k0, k1):
        return sum(torch.exp(src(k0, k1) - m) / s for src, (m, s) in zip(sources, stats)) / len(sources)

    return running_argmax(averaged, K, chunk)[0]
