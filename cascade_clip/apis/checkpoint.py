"""Loading trained weights into a model: safely, and checked against it.

Testing, inference, the demo and the measuring tools load with ``strict=True``: every key of
the model must be in the checkpoint with its shape, and the checkpoint may hold nothing else
(except the keys the model declares optional, see ``OPTIONAL_STATE_KEYS`` of the
segmentor). Fine-tuning from a partial checkpoint (``tools/train.py --load-partial``) loads
what matches and logs exactly what was skipped.
"""
from typing import Optional

import torch.nn as nn
from mmcv.parallel import is_module_wrapper
from mmcv.utils import print_log

from ..utils.checkpoint import (CheckpointError, compare_state_dict, describe_keys, safe_load,
                                state_dict_of)
from ..utils.vocabulary_names import same_names


def load_weights(model: nn.Module, path: str, config: Optional[str] = None, strict: bool = True,
                 check_classes: bool = False, logger=None) -> dict:
    """Load the weights of checkpoint ``path`` into ``model``; return the checkpoint's meta.

    Args:
        config: the config file the model was built from, named in error messages.
        strict: refuse missing, unexpected and shape-mismatched keys (listing the first few
            and their count); otherwise load the matching keys and log the rest.
        check_classes: also require the checkpoint's ``meta['CLASSES']`` (when present) to be
            the model's class names (testing on the classes the model was trained on).

    Raises:
        CheckpointError: unreadable/unsafe file, a mismatch (strict), or other classes.
    """
    model = model.module if is_module_wrapper(model) else model
    checkpoint = safe_load(path)
    meta = checkpoint.get('meta') or {} if isinstance(checkpoint, dict) else {}
    state_dict = state_dict_of(checkpoint, path)
    optional = dict(getattr(model, 'OPTIONAL_STATE_KEYS', {}))
    own = model.state_dict()
    # optional keys may be absent or sized for another class list: the model keeps its own
    state_dict = {k: v for k, v in state_dict.items()
                  if not (k in optional and (k not in own or own[k].shape != v.shape))}
    missing, unexpected, mismatched = compare_state_dict(model, state_dict, optional)
    against = f' (model from {config})' if config else ''
    if strict and (missing or unexpected or mismatched):
        parts = [describe_keys(t, ks) for t, ks in (('missing keys', missing),
                                                     ('unexpected keys', unexpected),
                                                     ('keys of another shape', mismatched)) if ks]
        raise CheckpointError(f'checkpoint {path} does not match the model{against}: '
                              + '; '.join(parts) + '. Use the config the checkpoint was trained '
                              'with (or, to fine-tune from part of it, --load-partial)')
    if mismatched:
        bad = {m.split(':')[0] for m in mismatched}
        state_dict = {k: v for k, v in state_dict.items() if k not in bad}
    model.load_state_dict(state_dict, strict=False)
    if not strict:
        print_log(f'loaded {len(state_dict) - len(unexpected)} tensors from {path}{against}; '
                  f'skipped {describe_keys("missing keys (kept at their initialisation)", missing, 50)}; '
                  f'{describe_keys("unexpected keys (ignored)", unexpected, 50)}; '
                  f'{describe_keys("keys of another shape (kept at their initialisation)", mismatched, 50)}',
                  logger)
    trained = meta.get('CLASSES')
    names = getattr(model, 'CLASSES', None)
    if check_classes and trained is not None and names is not None and not same_names(trained, names):
        raise CheckpointError(
            f'checkpoint {path} was trained on {len(trained)} classes {_head(trained)}, but the '
            f'model{against} segments {len(names)} classes {_head(names)}: test on the dataset '
            f'it was trained on, give the vocabulary explicitly (class_names / --classes), or '
            f'mark a cross-dataset config with cross_dataset = True')
    return meta


def _head(names, n: int = 4) -> str:
    names = list(names)
    return str(names[:n])[:-1] + (', ...]' if len(names) > n else ']')
