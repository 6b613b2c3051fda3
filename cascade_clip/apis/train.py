"""``train_segmentor``: MMSeg's training flow, runnable on the CPU with several processes."""
import copy
import warnings

import torch
from mmcv.parallel import MMDataParallel, MMDistributedDataParallel
from mmcv.runner import build_runner, get_dist_info
from mmcv.utils import build_from_cfg
from mmcv.runner import HOOKS
from mmseg.core import DistEvalHook, EvalHook, build_optimizer
from mmseg.datasets import build_dataloader, build_dataset
from mmseg.utils import get_root_logger

from ..core import NonFiniteLossHook
from .checkpoint import load_weights
from .checks import check_resume, check_training_values, find_resume_checkpoint
from .dist import broadcast_module


def wrap_model(model, device: str, distributed: bool, find_unused_parameters: bool = False):
    """MMCV wrapper for ``device`` ('cpu', 'cuda' or 'cuda:N'; plain 'cuda' is the current
    GPU, the one ``init_dist`` chose in a distributed run): DDP on CUDA, a replicated CPU model
    otherwise.

    On the CPU, MMSeg's ``build_ddp`` refuses the device; each process then keeps its own
    replica in an ``MMDataParallel`` (which moves MMCV's DataContainers to the CPU), starting
    from rank 0's weights, and the gradients are averaged by ``GradAllReduceOptimizerHook``.
    """
    dev = torch.device(device)
    if dev.type == 'cuda':
        index = torch.cuda.current_device() if dev.index is None else dev.index
        model = model.to(torch.device('cuda', index))
        if distributed:
            return MMDistributedDataParallel(model, device_ids=[index], broadcast_buffers=False,
                                             find_unused_parameters=find_unused_parameters)
        return MMDataParallel(model, device_ids=[index])
    if dev.type != 'cpu':
        raise ValueError(f'unsupported device {device!r} (cuda or cpu)')
    if distributed:
        broadcast_module(model)
    return MMDataParallel(model.cpu(), device_ids=None)


def check_one_batch(dataset, loader, samples_per_gpu: int, distributed: bool,
                    micro_batches: int = 1) -> None:
    """Raise ValueError when ``loader`` (built with drop_last=True) has no complete batch:
    MMCV's runner would otherwise fail with a bare StopIteration at the first iteration.

    ``samples_per_gpu`` is the config's value; with gradient accumulation the loader yields
    ``micro_batches`` times as many images per step."""
    if len(loader) > 0:
        return
    _, world = get_dist_info()
    processes = world if distributed else 1
    per_step = loader.batch_size * processes
    # images one process iterates (its share of a distributed sampler), and the largest
    # samples_per_gpu that gives it a complete batch
    largest = len(loader.sampler) * samples_per_gpu // loader.batch_size
    accumulated = f' x {micro_batches} micro-batches' if micro_batches > 1 else ''
    fix = (f'lower data.samples_per_gpu to at most {largest} (e.g. --cfg-options '
           f'data.samples_per_gpu={largest}), ' if largest else '')
    if micro_batches > 1:
        fix += 'accumulate fewer micro-batches (cumulative_iters / --total-batch), '
    fix = (fix + 'use fewer processes, or add images') if fix else 'add images to the training set'
    raise ValueError(
        f'the training set ({type(dataset).__name__}, {len(dataset)} images) is smaller than one '
        f'batch: data.samples_per_gpu={samples_per_gpu}{accumulated} x {processes} process(es) = '
        f'{per_step} images per step, and incomplete batches are dropped (drop_last=True), so '
        f'there is nothing to train on: {fix}')


ACCUMULATING_HOOKS = ('GradientCumulativeOptimizerHook', 'GradientCumulativeFp16OptimizerHook')
# this project's hooks, which can also be configured directly (micro_batches=K)
OWN_HOOKS = ('MicroBatchOptimizerHook', 'GradAllReduceOptimizerHook', 'GradScalerOptimizerHook')


def accumulation_steps(optimizer_config) -> int:
    """K of ``optimizer_config=dict(type='GradientCumulativeOptimizerHook', cumulative_iters=K)``
    or of this project's hooks with ``micro_batches=K`` (1 for any other optimizer hook)."""
    optimizer_config = optimizer_config or {}
    if optimizer_config.get('type') in ACCUMULATING_HOOKS:
        return int(optimizer_config.get('cumulative_iters', 1))
    if optimizer_config.get('type') in OWN_HOOKS:
        return int(optimizer_config.get('micro_batches', 1))
    return 1


def optimizer_hook_config(cfg, device: str, distributed: bool) -> dict:
    """The optimizer hook for ``cfg.optimizer_config`` on ``device``.

    ``OptimizerHook`` (or no type) stays MMCV's hook unless the run needs loss scaling
    (``model.amp_dtype='fp16'``) or averages gradients itself (several CPU processes).
    ``GradientCumulativeOptimizerHook`` / ``GradientCumulativeFp16OptimizerHook`` with
    ``cumulative_iters=K`` become ``MicroBatchOptimizerHook(micro_batches=K)``: the exact
    accumulation of this project (mask count over the accumulated batch, one runner iteration
    per optimizer step; see ``CascadeCLIP.train_step``), with the same loss scaling and
    all-reduce as without accumulation. This project's hooks given by name stay as they are;
    on several CPU processes they must average the gradients themselves.
    """
    optimizer_config = copy.deepcopy(cfg.optimizer_config or {})
    hook_type = optimizer_config.pop('type', 'OptimizerHook')
    replicated = distributed and device == 'cpu'  # gradients averaged by the hook, not DDP
    fp16 = cfg.model.get('amp_dtype') in ('fp16', 'float16')
    if hook_type in ACCUMULATING_HOOKS:
        micro_batches = int(optimizer_config.pop('cumulative_iters', 1))
        fp16 = fp16 or hook_type == 'GradientCumulativeFp16OptimizerHook'
        for key in ('loss_scale', 'distributed'):  # MMCV's fp16 hook's arguments
            optimizer_config.pop(key, None)
        return dict(optimizer_config, type='MicroBatchOptimizerHook', micro_batches=micro_batches,
                    allreduce=replicated, fp16=fp16)
    if hook_type in OWN_HOOKS:
        if replicated and not (hook_type == 'GradAllReduceOptimizerHook'
                               or optimizer_config.get('allreduce')):
            raise ValueError(
                f'optimizer_config type {hook_type} without allreduce=True on several CPU '
                f'processes: each process would step on its own gradients (no DistributedDataParallel '
                f'on the CPU); set optimizer_config.allreduce=True')
        return dict(optimizer_config, type=hook_type)
    if hook_type == 'OptimizerHook':
        if fp16:
            return dict(optimizer_config, type='GradScalerOptimizerHook', allreduce=replicated)
        if replicated:
            return dict(optimizer_config, type='GradAllReduceOptimizerHook')
        return dict(optimizer_config, type='OptimizerHook')
    if replicated:
        raise ValueError(f'optimizer_config type {hook_type} is not supported for distributed '
                         f'CPU training')
    return dict(optimizer_config, type=hook_type)


def train_segmentor(model, dataset, cfg, distributed=False, validate=False, timestamp=None, meta=None):
    """Train ``model`` as ``mmseg.apis.train_segmentor`` does (same config keys)."""
    check_training_values(cfg)
    logger = get_root_logger(cfg.log_level)
    dataset = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    device = cfg.get('device', 'cuda' if torch.cuda.is_available() else 'cpu')
    loader_cfg = dict(num_gpus=len(cfg.gpu_ids), dist=distributed, seed=cfg.seed, drop_last=True)
    loader_cfg.update({
        k: v for k, v in cfg.data.items()
        if k not in ['train', 'val', 'test', 'train_dataloader', 'val_dataloader', 'test_dataloader']
    })
    train_loader_cfg = {**loader_cfg, **cfg.data.get('train_dataloader', {})}
    samples_per_gpu = train_loader_cfg['samples_per_gpu']
    micro_batches = accumulation_steps(cfg.optimizer_config)
    if micro_batches > 1:
        # one runner iteration = one optimizer step over K micro-batches of samples_per_gpu
        train_loader_cfg['samples_per_gpu'] = samples_per_gpu * micro_batches
        logger.info(f'gradient accumulation: {micro_batches} micro-batches of {samples_per_gpu} '
                    f'image(s) per GPU and optimizer step; max_iters and the schedule count '
                    f'optimizer steps')
    data_loaders = [build_dataloader(ds, **train_loader_cfg) for ds in dataset]
    for ds, loader in zip(dataset, data_loaders):
        check_one_batch(ds, loader, samples_per_gpu, distributed, micro_batches)

    model = wrap_model(model, device, distributed, cfg.get('find_unused_parameters', False))
    optimizer = build_optimizer(model, cfg.optimizer)
    if cfg.get('runner') is None:
        cfg.runner = {'type': 'AtomicIterBasedRunner', 'max_iters': cfg.total_iters}
        warnings.warn('config is now expected to have a `runner` section', UserWarning)
    runner = build_runner(
        cfg.runner,
        default_args=dict(model=model, batch_processor=None, optimizer=optimizer,
                          work_dir=cfg.work_dir, logger=logger, meta=meta))

    optimizer_config = optimizer_hook_config(cfg, device, distributed)
    runner.register_training_hooks(cfg.lr_config, optimizer_config, cfg.checkpoint_config,
                                   cfg.log_config, cfg.get('momentum_config', None))
    # before the optimizer hook (ABOVE_NORMAL): a NaN/inf loss stops the run before it
    # changes the weights or writes a checkpoint
    runner.register_hook(NonFiniteLossHook(), priority='HIGH')
    runner.timestamp = timestamp

    if validate:
        val_dataset = build_dataset(cfg.data.val, dict(test_mode=True))
        val_loader_cfg = {**loader_cfg, 'samples_per_gpu': 1, 'shuffle': False,
                          **cfg.data.get('val_dataloader', {})}
        val_dataloader = build_dataloader(val_dataset, **val_loader_cfg)
        eval_cfg = copy.deepcopy(cfg.get('evaluation', {}))
        eval_cfg['by_epoch'] = 'IterBased' not in cfg.runner['type']
        eval_hook = DistEvalHook if distributed else EvalHook
        runner.register_hook(eval_hook(val_dataloader, **eval_cfg), priority='LOW')

    for hook_cfg in cfg.get('custom_hooks', None) or []:
        hook_cfg = hook_cfg.copy()
        priority = hook_cfg.pop('priority', 'NORMAL')
        runner.register_hook(build_from_cfg(hook_cfg, HOOKS), priority=priority)

    if cfg.resume_from is None and cfg.get('auto_resume'):
        resume_from = find_resume_checkpoint(cfg.work_dir, logger)
        if resume_from is not None:
            cfg.resume_from = resume_from
    if cfg.resume_from:
        check_resume(cfg.resume_from, model, cfg, get_dist_info()[1] if distributed else 1,
                     cfg.get('resume_any_batch', False), logger)
        runner.resume(cfg.resume_from, map_location='cpu' if device == 'cpu' else 'default')
    elif cfg.load_from:
        load_weights(model, cfg.load_from, config=cfg.filename, strict=not cfg.get('load_partial', False),
                     logger=logger)
    runner.run(data_loaders, cfg.workflow)
