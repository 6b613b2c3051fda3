"""``Vocabulary``: the classes a Cascade-CLIP model segments (names, seen ones, text
embeddings), validated once; everything that depends on the classes derives from it."""
import logging
import re
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.utils import print_log
from mmseg.utils import get_root_logger

from ..utils.visualize import default_palette
from ..utils.vocabulary_names import normalise_name


def check_class_names(names: Sequence[str], source: Optional[str] = None) -> Tuple[str, ...]:
    """Stripped names; refuses an empty list or name, or two names equal up to case and space."""
    where = f' in {source}' if source else ''
    out = tuple(re.sub(r'\s+', ' ', str(n)).strip() for n in names)
    if not out:
        raise ValueError(f'the class list{where} is empty')
    empty = [i for i, n in enumerate(out) if not n]
    if empty:
        raise ValueError(f'class names{where} at positions {empty} are empty')
    seen = {}
    for i, n in enumerate(out):
        key = normalise_name(n)
        if key in seen:
            j = seen[key]
            raise ValueError(f'class names{where} {names[j]!r} (position {j}) and {names[i]!r} '
                             f'(position {i}) are the same class up to case and white space')
        seen[key] = i
    return out


def check_embeddings(emb: torch.Tensor, names: Sequence[str], dim: Optional[int] = None,
                     source: Optional[str] = None) -> torch.Tensor:
    """(K, D) float32 copy of ``emb``; refuses non-finite or zero rows and a shape that does not
    fit ``names`` / width ``dim``."""
    where = f' in {source}' if source else ''
    if not isinstance(emb, torch.Tensor):
        arr = np.asarray(emb)
        if arr.dtype.kind != 'f':  # ints, bools, complex, strings, objects: not embeddings
            raise ValueError(f'text embeddings{where} have dtype {arr.dtype}, expected a '
                             f'floating-point (K, D) array (float16, float32 or float64)')
        emb = torch.from_numpy(arr.astype(np.float32))
    elif not emb.is_floating_point():
        raise ValueError(f'text embeddings{where} have dtype {emb.dtype}, expected a '
                         f'floating-point (K, D) tensor')
    # validated where it is (no device move: a torch.device context must not redirect it)
    emb = emb.detach().float()
    want = f'({len(names)}, {dim if dim is not None else "D"})'
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise ValueError(f'text embeddings{where} have shape {tuple(emb.shape)}, expected {want}: '
                         f'one row per class ({len(names)} classes)')
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(f'text embeddings{where} have width {emb.shape[1]}, but the model expects '
                         f'{dim}: shape should be {want}')
    bad = (~torch.isfinite(emb)).any(dim=1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f'text embedding row {i} (class {names[i]!r}){where} is not finite '
                         f'(NaN or inf), like {int(bad.sum())} row(s) in all')
    zero = emb.norm(dim=1) == 0
    if zero.any():
        i = int(zero.nonzero()[0])
        raise ValueError(f'text embedding row {i} (class {names[i]!r}){where} is all zeros '
                         f'(zero norm), like {int(zero.sum())} row(s) in all')
    return emb.contiguous()


# How far a row's norm may be from 1 and be used as it is: the published float16 files are
# within ~5e-4, CLIP's un-normalised text features have norms of several units.
UNIT_NORM_TOLERANCE = 1e-2


def unit_rows(emb: torch.Tensor, source: Optional[str] = None, logger=None) -> torch.Tensor:
    """``emb`` (K, D) with the rows further than :data:`UNIT_NORM_TOLERANCE` from unit length
    L2-normalised (with a warning); the others as they are, as the published code uses them."""
    norms = emb.norm(dim=1, keepdim=True)
    off = (norms - 1).abs().squeeze(1) > UNIT_NORM_TOLERANCE
    if not off.any():
        return emb
    i = int(off.nonzero()[0])
    print_log(f'text embeddings{f" in {source}" if source else ""}: {int(off.sum())} of '
              f'{emb.shape[0]} rows are not unit length (row {i} has norm {float(norms[i]):.4g}); '
              f'they are L2-normalised, as tools/build_text_embeddings.py writes them',
              logger or get_root_logger(), level=logging.WARNING)
    return torch.where(off.unsqueeze(1), emb / norms, emb)


class Vocabulary:
    """Class names, the seen (training) classes among them, and their text embeddings (immutable).

    Args:
        names: the classes, in label order.
        seen: indices of the seen classes (the others are unseen); default all.
        embeddings: (K, D) class text embeddings, or None until computed by the text encoder.
        source: where the embeddings come from (a file name), for messages.
    """

    def __init__(self, names: Sequence[str], seen: Optional[Sequence[int]] = None,
                 embeddings: Optional[torch.Tensor] = None, source: Optional[str] = None):
        self.names = check_class_names(names)
        k = len(self.names)
        seen = list(range(k)) if seen is None else [int(i) for i in seen]
        outside = sorted({i for i in seen if not 0 <= i < k})
        if outside:
            raise ValueError(f'seen class ids {outside} are outside the {k} classes [0, {k})')
        if len(set(seen)) != len(seen):
            raise ValueError(f'seen class ids list some ids twice: {seen}')
        self.seen = tuple(sorted(seen))
        self.unseen = tuple(i for i in range(k) if i not in set(self.seen))
        self.source = source
        self.embeddings = None if embeddings is None else check_embeddings(embeddings, self.names,
                                                                           source=source)

    @classmethod
    def from_split(cls, names: Optional[Sequence[str]], base_class: Optional[Sequence[int]],
                   novel_class: Optional[Sequence[int]],
                   both_class: Optional[Sequence[int]]) -> 'Vocabulary':
        """The vocabulary of the published config keys (names 'class i' when ``names`` is None)."""
        if both_class is None:
            if names is None:
                raise ValueError('give both_class or class_names')
            both_class = range(len(names))
        n = len(both_class)
        if [int(i) for i in both_class] != list(range(n)):
            raise ValueError(f'both_class must be 0..{n - 1} in order, got {list(both_class)[:10]}...')
        base = list(range(n)) if base_class is None else [int(i) for i in base_class]
        novel = [] if novel_class is None else [int(i) for i in novel_class]
        if names is not None and len(names) != n:
            raise ValueError(f'{len(names)} class names for {n} classes (both_class)')
        for key, ids in (('base_class', base), ('novel_class', novel)):
            outside = sorted({i for i in ids if not 0 <= i < n})
            if outside or len(set(ids)) != len(ids):
                raise ValueError(f'{key} {ids} has ids outside 0..{n - 1} {outside} or twice')
        overlap = sorted(set(base) & set(novel))
        neither = sorted(set(range(n)) - set(base) - set(novel))
        if overlap or neither:
            raise ValueError(f'base_class and novel_class must split the classes 0..{n - 1}: ids '
                             f'{overlap or neither} are in ' + ('both' if overlap else 'neither'))
        return cls(names if names is not None else [f'class {i}' for i in range(n)], base)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        emb = 'none' if self.embeddings is None else f'{tuple(self.embeddings.shape)}'
        return f'Vocabulary({len(self)} classes, {len(self.seen)} seen, embeddings {emb})'

    @property
    def zero_shot(self) -> bool:
        """Whether some classes are unseen."""
        return bool(self.unseen)

    @property
    def palette(self) -> np.ndarray:
        return default_palette(len(self))

    def with_embeddings(self, embeddings: torch.Tensor, source: Optional[str] = None) -> 'Vocabulary':
        return Vocabulary(self.names, self.seen, embeddings, source)

    def to(self, fn) -> 'Vocabulary':
        """The same vocabulary with ``fn`` applied to the embeddings (device moves)."""
        if self.embeddings is None:
            return self
        out = Vocabulary.__new__(Vocabulary)
        out.__dict__.update(self.__dict__)
        out.embeddings = fn(self.embeddings)
        return out

    def label_map(self, transductive: bool) -> torch.Tensor:
        """(256,) lookup table, dataset label -> training target: inductive, the index among
        the seen classes (unseen: 255, ignored); transductive, the id (unseen: -1)."""
        if len(self) > 255:
            raise ValueError(f'{len(self)} classes cannot train: training label maps are 8-bit '
                             f'with 255 ignored, so at most 255 classes')
        lut = torch.full((256, ), 255, dtype=torch.long)
        ids = torch.arange(len(self))
        if transductive or not self.zero_shot:
            lut[:len(self)] = ids
            if transductive and self.unseen:
                lut[list(self.unseen)] = -1
        else:
            lut[list(self.seen)] = torch.arange(len(self.seen))
        return lut
