"""Loading trained weights into a model: safely, and checked against it."""
from typing import Optional

import torch.nn as nn
from mmcv.parallel import is_module_wrapper

from ..utils.checkpoint import CheckpointError, load_state_dict_checked, safe_load, state_dict_of
from ..utils.vocabulary_names import same_names


def load_weights(model: nn.Module, path: str, config: Optional[str] = None, strict: bool = True,
                 check_classes: bool = False, logger=None) -> dict:
    """Load the weights of checkpoint ``path`` into ``model``; return the checkpoint's meta.

    Args:
        config: the config file the model was built from, named in messages.
        strict: refuse missing, unexpected and mismatched keys; else load the matching ones.
        check_classes: also require the checkpoint's ``meta['CLASSES']`` to be the model's.
    """
    model = model.module if is_module_wrapper(model) else model
    checkpoint = safe_load(path)
    meta = (checkpoint.get('meta') or {}) if isinstance(checkpoint, dict) else {}
    against = f' (model from {config})' if config else ''
    load_state_dict_checked(model, state_dict_of(checkpoint, path), path, strict,
                            'Use the config the checkpoint was trained with (or, to fine-tune '
                            'from part of it, --load-partial)', logger, f'the model{against}')
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
