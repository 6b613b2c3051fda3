"""One owner of a run's precision: ``model.amp_dtype``.

``CascadeCLIP`` autocasts its image encoder and head to ``model.amp_dtype`` (None / 'fp32',
'bf16', 'fp16'); with 'fp16' training scales the loss (``LossScaleOptimizerHook``, chosen by
``train_segmentor``). MMSeg's and MMCV's own fp16 switches, ``fp16 = dict(loss_scale=...)``
and the ``Fp16OptimizerHook`` types, would autocast a second time (``wrap_fp16_model`` and
``@auto_fp16``); they are translated onto ``model.amp_dtype`` here, before the model is built,
or refused when ``model.amp_dtype`` says otherwise.
"""
from typing import Optional

from mmcv.utils import print_log

FP16_NAMES = ('fp16', 'float16')
# MMCV's loss-scaling hooks -> the same hook without loss scaling (the scaling follows
# model.amp_dtype='fp16')
FP16_HOOKS = {'Fp16OptimizerHook': 'OptimizerHook',
              'GradientCumulativeFp16OptimizerHook': 'GradientCumulativeOptimizerHook'}


def resolve_precision(cfg, logger=None) -> Optional[str]:
    """Translate ``cfg.fp16`` and an fp16 ``optimizer_config`` type onto ``cfg.model.amp_dtype``
    (in place) and return it.

    ``cfg.fp16 = dict(loss_scale=X)`` becomes ``model.amp_dtype='fp16'`` with
    ``optimizer_config.loss_scale=X``, and ``cfg.fp16`` is removed;
    ``optimizer_config.type='Fp16OptimizerHook'`` (or ``GradientCumulativeFp16OptimizerHook``)
    becomes ``model.amp_dtype='fp16'`` with ``OptimizerHook``
    (``GradientCumulativeOptimizerHook``), keeping its ``loss_scale``.

    Raises:
        ValueError: when ``model.amp_dtype`` is set to another precision than fp16.
    """
    amp = cfg.model.get('amp_dtype')
    fp16 = cfg.get('fp16', None)
    optimizer_config = cfg.get('optimizer_config') or {}
    hook_type = optimizer_config.get('type')
    sources = []
    if fp16 is not None:
        sources.append(f'fp16={dict(fp16)!r}')
    if hook_type in FP16_HOOKS:
        sources.append(f'optimizer_config.type={hook_type!r}')
    if not sources:
        return amp
    if amp is not None and amp not in FP16_NAMES:
        raise ValueError(
            f'{" and ".join(sources)} asks for fp16 training, but model.amp_dtype={amp!r}: the '
            f'precision of a run is set by model.amp_dtype alone; remove '
            f'{" and ".join(s.split("=")[0] for s in sources)} or set model.amp_dtype=\'fp16\' '
            f'(loss scaling follows)')
    if fp16 is not None:
        scale = dict(fp16).get('loss_scale')
        cfg.pop('fp16')
        if scale is not None and 'loss_scale' not in optimizer_config:
            cfg.optimizer_config = dict(optimizer_config, loss_scale=scale)
    if hook_type in FP16_HOOKS:
        cfg.optimizer_config = dict(cfg.optimizer_config, type=FP16_HOOKS[hook_type])
    cfg.model.amp_dtype = 'fp16'
    print_log(f'{" and ".join(sources)} -> model.amp_dtype=\'fp16\' (the one precision key; '
              f'loss scaling by LossScaleOptimizerHook in training)', logger or 'mmseg')
    return 'fp16'
