"""Safe reading of checkpoint files, and strict matching of a state dict against a model.

Every checkpoint the project reads goes through :func:`safe_load`: ``torch.load`` with
``weights_only=True``, so a pickle can only rebuild tensors, containers and plain Python
values, plus the few extra types listed in :data:`ALLOWED_GLOBALS`. Anything else is refused
before it is built (nothing in the file runs), with an error naming the file and the types.

Importing this module also makes it MMCV's loader for local paths (MMCV's
``CheckpointLoader`` scheme ``''``), so ``mmcv.runner.load_checkpoint``, the runner's
``resume``/``load_from`` and MMSeg's stock tools read files the same safe way once
``cascade_clip`` is imported.
"""
import os.path as osp
import pickle
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmcv.runner.checkpoint import CheckpointLoader

# Types that MMCV / MMSeg 0.x checkpoints legitimately carry in ``meta`` besides plain Python
# values and tensors (which weights_only accepts by default):
#  - numpy arrays: MMSeg's CustomDataset makes a random numpy PALETTE when a config gives
#    ``classes`` without a palette, and train.py stores ``meta['PALETTE']`` as it is;
#  - numpy scalars: seeds and counters from numpy (``np.random.randint``) in older MMSeg/MMCV.
# Each needs the array rebuilder, the ndarray and dtype types and the scalar rebuilder; the
# names are given for numpy >= 2 (``numpy._core``) and for files pickled with numpy 1.x
# (``numpy.core``), which is how checkpoints published with MMSeg 0.x spell them.
ALLOWED_GLOBALS: List = [
    np.ndarray,
    np.dtype,
    (np._core.multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
    (np._core.multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
    (np._core.multiarray.scalar, 'numpy._core.multiarray.scalar'),
    (np._core.multiarray.scalar, 'numpy.core.multiarray.scalar'),
] + [type(np.dtype(t)) for t in ('bool', 'uint8', 'int32', 'int64', 'uint32', 'float32', 'float64')]

_ALLOWED_NAMES = {name if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
                  for g in ALLOWED_GLOBALS for name in ([g[1]] if isinstance(g, tuple) else [None])}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


def safe_load(path: str, map_location='cpu') -> object:
    """``torch.load(path, weights_only=True)`` with :data:`ALLOWED_GLOBALS`; clear errors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a torch file, or its pickle needs a type that is not
            allowed (named in the message; nothing from the file was executed).
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise CheckpointError(
                f'refused to load {path}: it needs the type(s) {", ".join(unsafe)}, which are not '
                f'tensors, plain Python values or the numpy types that MMCV checkpoints carry. '
                f'Nothing from the file was run. Only load files from sources you trust; to use '
                f'the weights, re-save the state dict alone (torch.save({{"state_dict": sd}}, ...)) '
                f'from a trusted environment') from None
        raise CheckpointError(f'{path} is not a readable torch checkpoint ({_short(e)})') from None
    except Exception as e:  # noqa: B902 - a foreign file fails anywhere inside the unpickler
        raise CheckpointError(f'{path} is not a torch checkpoint (a file written by torch.save: '
                              f'{type(e).__name__}: {_short(e)})') from None


def _unsafe_globals(path: str) -> List[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip archive: an old-format or foreign file
        return []
    return sorted(set(names) - _ALLOWED_NAMES)


def _short(e: BaseException, n: int = 200) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else repr(e))[:n]


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str, map_location=None) -> object:
    """MMCV's loader for local paths, replaced by :func:`safe_load`."""
    return safe_load(filename, map_location=map_location)


def state_dict_of(checkpoint: object, path: str) -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint (``state_dict``/``model`` key or a bare dict),
    with the ``module.`` prefix of (Distributed)DataParallel removed."""
    sd = checkpoint
    if isinstance(sd, Mapping):
        for key in ('state_dict', 'model'):
            if isinstance(sd.get(key), Mapping):
                sd = sd[key]
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f'{path} holds no state dict (expected a dict of tensors, or one '
                              f'under "state_dict")')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}


def compare_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                       optional: Iterable[str] = ()) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, shape mismatches) of ``state_dict`` against ``model``'s keys.

    ``optional`` names model keys that may be absent from the checkpoint (not reported
    missing).
    """
    own = model.state_dict()
    optional = set(optional)
    missing = [k for k in own if k not in state_dict and k not in optional]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)}'
                  for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    return missing, unexpected, mismatched


def describe_keys(title: str, keys: Sequence[str], first: int = 5) -> str:
    """'3 missing keys: a, b, c' with at most ``first`` keys listed."""
    more = f', ... ({len(keys) - first} more)' if len(keys) > first else ''
    return f'{len(keys)} {title}: {", ".join(keys[:first])}{more}'
