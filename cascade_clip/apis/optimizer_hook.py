"""The optimizer step of a run, from its config: precision (loss scaling) and accumulation.

``model.amp_dtype`` alone sets the precision; MMSeg's ``fp16`` and the ``Fp16OptimizerHook`` types
would autocast a second time, so they are translated onto it before the model is built."""
import copy
from typing import Optional, Tuple

from mmcv.utils import print_log

FP16_NAMES = ('fp16', 'float16')
# MMCV's loss-scaling hooks -> the same hook without (the scaling follows model.amp_dtype='fp16')
FP16_HOOKS = {'Fp16OptimizerHook': 'OptimizerHook',
              'GradientCumulativeFp16OptimizerHook': 'GradientCumulativeOptimizerHook'}


def resolve_precision(cfg, logger=None) -> Optional[str]:
    """Translate ``cfg.fp16`` and an fp16 ``optimizer_config`` type onto ``cfg.model.amp_dtype``
    (in place, ``loss_scale`` kept) and return it; ValueError if amp_dtype says otherwise."""
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


ACCUMULATING_HOOKS = ('GradientCumulativeOptimizerHook', 'GradientCumulativeFp16OptimizerHook')
# arguments of MMCV's Fp16OptimizerHook that have no use with DistributedDataParallel
_MMCV_FP16_ONLY = ('coalesce', 'bucket_size_mb', 'distributed')


def optimizer_hook_config(optimizer_config, amp_dtype, fp16=None) -> Tuple[dict, int]:
    """The optimizer hook and the micro-batches K per runner iteration: one optimizer step per
    iteration over K micro-batches (``cumulative_iters=K``); other hook types as given (K = 1)."""
    if fp16 is not None:
        raise ValueError('cfg.fp16 is MMSeg\'s fp16 switch; here the precision is model.amp_dtype: '
                         'set model.amp_dtype=\'fp16\' (loss scaling follows), or translate the '
                         'config with cascade_clip.apis.resolve_precision before building the model')
    optimizer_config = copy.deepcopy(dict(optimizer_config or {}))
    hook_type = optimizer_config.pop('type', 'OptimizerHook')
    if hook_type in FP16_HOOKS:
        raise ValueError(f'optimizer_config.type={hook_type!r}: the precision is model.amp_dtype '
                         f'(resolve_precision translates this type onto it); use '
                         f'{FP16_HOOKS[hook_type]!r} with model.amp_dtype=\'fp16\'')
    if hook_type not in ('OptimizerHook', *ACCUMULATING_HOOKS):
        return dict(optimizer_config, type=hook_type), 1
    micro_batches = int(optimizer_config.pop('cumulative_iters', 1))
    if micro_batches < 1:
        raise ValueError(f'optimizer_config.cumulative_iters must be >= 1, got {micro_batches}')
    if amp_dtype in FP16_NAMES:
        for key in _MMCV_FP16_ONLY:
            optimizer_config.pop(key, None)
        return dict(optimizer_config, type='LossScaleOptimizerHook'), micro_batches
    if 'loss_scale' in optimizer_config:
        raise ValueError(f'optimizer_config.loss_scale={optimizer_config["loss_scale"]!r} without '
                         f'fp16: loss scaling is for model.amp_dtype=\'fp16\' (model.amp_dtype='
                         f'{amp_dtype!r})')
    if micro_batches > 1:
        return dict(optimizer_config, type='GradientCumulativeOptimizerHook', cumulative_iters=1), micro_batches
    return dict(optimizer_config, type='OptimizerHook'), 1


def set_total_batch(cfg, total_batch: int, world_size: int) -> int:
    """Accumulate K = total_batch / (world_size x samples_per_gpu) micro-batches per optimizer
    step (``optimizer_config.cumulative_iters``, ``grad_clip`` kept); returns K."""
    per_gpu = cfg.data.get('train_dataloader', {}).get('samples_per_gpu', cfg.data.samples_per_gpu)
    per_step = world_size * per_gpu
    if total_batch < per_step or total_batch % per_step:
        raise ValueError(f'--total-batch {total_batch} is not a multiple of {world_size} '
                         f'process(es) x samples_per_gpu {per_gpu} = {per_step}: change '
                         f'data.samples_per_gpu (--cfg-options data.samples_per_gpu=N)')
    hook = dict(cfg.get('optimizer_config') or {})
    hook_type = hook.pop('type', 'OptimizerHook')
    if hook_type not in ('OptimizerHook', *ACCUMULATING_HOOKS):
        raise ValueError(f'--total-batch needs an OptimizerHook config, got {hook_type}')
    hook.pop('cumulative_iters', None)
    k = total_batch // per_step
    cfg.optimizer_config = dict(hook, type='GradientCumulativeOptimizerHook' if hook_type == 'OptimizerHook'
                                else hook_type, cumulative_iters=k)
    return k
