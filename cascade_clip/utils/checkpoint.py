"""Safe reading of checkpoint files, and strict matching of a state dict against a model.

Importing this module makes :func:`safe_load` MMCV's loader for local paths and refuses MMCV's
remote schemes before anything is fetched: MMCV would unpickle a download without restriction."""
import json
import os.path as osp
import pickle
import re
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmcv.runner.checkpoint import CheckpointLoader
from mmcv.utils import print_log

# What MMSeg 0.x checkpoints carry in ``meta`` besides plain values and tensors: numpy arrays
# (a random PALETTE when a config gives ``classes`` alone) and numpy scalars (seeds); named as
# numpy >= 2 and numpy 1.x (``numpy.core``, how published checkpoints spell them) pickle them.
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
    if is_remote(path):
        raise CheckpointError(remote_message(path))
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


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of the ``.safetensors`` file ``path`` (nothing is unpickled).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a valid .safetensors file (the message names it).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return load_file(path, device='cpu')
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f'{path} is not a valid .safetensors file ({_short(e)})') from None


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


# MMCV 1.x's remote schemes; any other one registered at import is refused too (loop below)
REMOTE_SCHEMES = ('http://', 'https://', 'torchvision://', 'modelzoo://', 'open-mmlab://',
                  'openmmlab://', 'mmcls://', 'pavi://', r'(\S+\:)?s3://')
# name prefixes MMCV resolves through its bundled model lists -> the list file
_MODEL_LISTS = {'open-mmlab://': 'open_mmlab.json', 'openmmlab://': 'open_mmlab.json',
                'mmcls://': 'mmcls.json', 'torchvision://': 'torchvision_0.12.json',
                'modelzoo://': 'torchvision_0.12.json'}


def is_remote(path) -> bool:
    """Whether ``path`` names a remote source (``scheme://...``, ``bucket:s3://...``)."""
    return isinstance(path, str) and re.match(r'[A-Za-z][A-Za-z0-9+.-]*:(\S*:)?//', path) is not None


def _resolved_url(path: str) -> Optional[str]:
    """The URL MMCV maps ``open-mmlab://name`` & co. to, from the lists bundled with MMCV."""
    for prefix, list_file in _MODEL_LISTS.items():
        if path.startswith(prefix):
            import mmcv
            try:
                with open(osp.join(mmcv.__path__[0], 'model_zoo', list_file)) as f:
                    urls = json.load(f)
            except (OSError, ValueError):
                return None
            name = path[len(prefix):]
            name = name.lower().replace('_weights', '') if 'torchvision' in list_file else name
            url = urls.get(name)
            return url if isinstance(url, str) and url.startswith(('http://', 'https://')) else None
    return None


def remote_message(path: str, what: str = 'checkpoint') -> str:
    url = path if path.startswith(('http://', 'https://')) else _resolved_url(path)
    where = (f'`wget -O FILE.pth {url}` (or `curl -L -o FILE.pth {url}`)' if url else
             'the tool of that storage service')
    return (f'refused to fetch the {what} {path}: checkpoints are read from local files only '
            f'(a downloaded checkpoint would be unpickled without the safe reader, and a '
            f'pickle can run code). Download it first with {where}, check that it comes from a '
            f'source you trust, and pass the local path instead')


def load_from_remote(filename: str, map_location=None) -> object:
    """MMCV's loader for every remote scheme: refuses before anything is fetched."""
    raise CheckpointError(remote_message(filename))


for _prefix in sorted(set(REMOTE_SCHEMES) | set(CheckpointLoader._schemes) - {''}):
    CheckpointLoader.register_scheme(prefixes=_prefix, loader=load_from_remote, force=True)


def check_local_source(path: Optional[str], what: str = 'checkpoint') -> None:
    """Refuse a remote ``path`` (a config's ``load_from``/``resume_from``) before any work."""
    if is_remote(path):
        raise CheckpointError(remote_message(path, what))


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


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str,
                            strict: bool = True, hint: str = '', logger=None,
                            model_name: str = 'the model') -> None:
    """Load ``state_dict`` into ``model``: every key with its shape, nothing else (but the
    model's ``OPTIONAL_STATE_KEYS``), else a CheckpointError listing the differences and
    ``hint``; with ``strict=False`` the matching keys load and the others are logged."""
    own = model.state_dict()
    optional = set(getattr(model, 'OPTIONAL_STATE_KEYS', ()))
    state_dict = {k: v for k, v in state_dict.items()
                  if not (k in optional and (k not in own or own[k].shape != v.shape))}
    missing = [k for k in own if k not in state_dict and k not in optional]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in state_dict if k in own and state_dict[k].shape != own[k].shape]
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}'
              for k in mismatched]
    if strict and (missing or unexpected or mismatched):
        raise CheckpointError(
            f'checkpoint {path} does not match {model_name}: ' + '; '.join(
                _keys(title, keys, 5) for title, keys in (('missing keys', missing), (
                    'unexpected keys', unexpected), ('keys of another shape', shapes)) if keys)
            + (f'. {hint}' if hint else ''))
    loaded = {k: v for k, v in state_dict.items() if k in own and k not in mismatched}
    model.load_state_dict(loaded, strict=False)
    if not strict:
        print_log(f'loaded {len(loaded)} tensors from {path}; skipped '
                  f'{_keys("missing keys (kept at their initialisation)", missing)}; '
                  f'{_keys("unexpected keys (ignored)", unexpected)}; '
                  f'{_keys("keys of another shape (kept at their initialisation)", shapes)}', logger)


def _keys(title: str, keys: Sequence[str], first: Optional[int] = None) -> str:
    """'3 missing keys: a, b, c', with at most ``first`` keys listed."""
    first = len(keys) if first is None else first
    more = f', ... ({len(keys) - first} more)' if len(keys) > first else ''
    return f'{len(keys)} {title}: {", ".join(keys[:first])}{more}'
