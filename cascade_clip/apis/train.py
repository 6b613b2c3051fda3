"""``train_segmentor``: MMSeg's training flow, runnable on the CPU with several processes."""
import copy
import warnings

import torch
from mmcv.runner import HOOKS, build_runner, get_dist_info
from mmcv.utils import build_from_cfg
from mmseg.core import build_optimizer
from mmseg.datasets import build_dataloader, build_dataset
from mmseg.utils import build_dp, get_device, get_root_logger

from ..core import (RUN_META_KEY, GatherDistEvalHook, NonFiniteLossHook, TrainIterEvalHook,
                    find_resume_checkpoint)
from .checkpoint import load_weights
from .dist import MMDDP
from .optimizer_hook import optimizer_hook_config


def wrap_model(model, device: str, distributed: bool, find_unused_parameters: bool = False):
    """MMCV's wrapper for ``device`` ('cpu', 'cuda' or 'cuda:N'): ``MMDataParallel`` in one
    process, ``MMDDP`` in a distributed run (MMSeg's ``build_ddp`` refuses the CPU)."""
    dev = torch.device(device)
    if dev.type not in ('cuda', 'cpu'):
        raise ValueError(f'unsupported device {device!r} (cuda or cpu)')
    if dev.type == 'cpu':
        model = model.cpu()
        return MMDDP(model, device_ids=None, broadcast_buffers=False,
                     find_unused_parameters=find_unused_parameters) if distributed else build_dp(model, 'cpu')
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if distributed:
        return MMDDP(model.to(torch.device('cuda', index)), device_ids=[index], broadcast_buffers=False,
                     find_unused_parameters=find_unused_parameters)
    with torch.cuda.device(index):  # build_dp moves the model to the current GPU
        return build_dp(model, 'cuda', device_ids=[index])


def check_one_batch(dataset, loader, samples_per_gpu: int, distributed: bool,
                    micro_batches: int = 1) -> None:
    """Raise ValueError when ``loader`` (drop_last=True) has no complete batch (MMCV's runner
    would stop with a bare StopIteration); ``samples_per_gpu`` is the config's value."""
    if len(loader) > 0:
        return
    _, world = get_dist_info()
    processes = world if distributed else 1
    per_step = loader.batch_size * processes
    # the largest samples_per_gpu that gives one process's share of the images a whole batch
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


def train_segmentor(model, dataset, cfg, distributed=False, validate=False, timestamp=None, meta=None):
    """Train ``model`` as ``mmseg.apis.train_segmentor`` does (same config keys; checked by
    ``check_config``)."""
    logger = get_root_logger(cfg.log_level)
    dataset = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    device = cfg.get('device', get_device())
    optimizer_config, micro_batches = optimizer_hook_config(
        cfg.optimizer_config, getattr(getattr(model, 'module', model), 'amp_dtype', None),
        cfg.get('fp16', None))
    loader_cfg = dict(num_gpus=len(cfg.gpu_ids), dist=distributed, seed=cfg.seed, drop_last=True)
    loader_cfg.update({k: v for k, v in cfg.data.items() if k not in [
        'train', 'val', 'test', 'train_dataloader', 'val_dataloader', 'test_dataloader']})
    train_loader_cfg = {**loader_cfg, **cfg.data.get('train_dataloader', {})}
    samples_per_gpu = train_loader_cfg['samples_per_gpu']
    if micro_batches > 1:
        # one runner iteration = one optimizer step over K micro-batches of samples_per_gpu
        train_loader_cfg['samples_per_gpu'] = samples_per_gpu * micro_batches
        logger.info(f'gradient accumulation: {micro_batches} micro-batches of {samples_per_gpu} '
                    f'image(s) per GPU and optimizer step; max_iters and the schedule count '
                    f'optimizer steps')
    data_loaders = [build_dataloader(ds, **train_loader_cfg) for ds in dataset]
    for ds, loader in zip(dataset, data_loaders):
        check_one_batch(ds, loader, samples_per_gpu, distributed, micro_batches)

    # what a resume must find unchanged (the runner checks it and every checkpoint keeps it)
    meta = dict(meta or {}, **{RUN_META_KEY: dict(
        seen=[int(i) for i in model.vocabulary.seen], samples_per_gpu=int(samples_per_gpu),
        micro_batches=micro_batches, world_size=get_dist_info()[1] if distributed else 1)})
    model = wrap_model(model, device, distributed, cfg.get('find_unused_parameters', False))
    optimizer = build_optimizer(model, cfg.optimizer)
    if cfg.get('runner') is None:
        cfg.runner = {'type': 'AtomicIterBasedRunner', 'max_iters': cfg.total_iters}
        warnings.warn('config is now expected to have a `runner` section', UserWarning)
    runner_cfg = dict(cfg.runner)
    if runner_cfg.get('micro_batches', micro_batches) != micro_batches:
        raise ValueError(f'runner.micro_batches={runner_cfg["micro_batches"]} differs from the '
                         f'{micro_batches} micro-batches of optimizer_config (cumulative_iters): '
                         f'set only optimizer_config.cumulative_iters')
    if micro_batches > 1:
        if runner_cfg.get('type') != 'AtomicIterBasedRunner':
            raise ValueError(f'gradient accumulation (cumulative_iters={micro_batches}) needs '
                             f'runner.type=\'AtomicIterBasedRunner\', got {runner_cfg.get("type")!r}')
        runner_cfg['micro_batches'] = micro_batches
    runner = build_runner(runner_cfg, default_args=dict(
        model=model, batch_processor=None, optimizer=optimizer, work_dir=cfg.work_dir,
        logger=logger, meta=meta))

    checkpoint_config = cfg.checkpoint_config
    if distributed and checkpoint_config is not None and \
            checkpoint_config.get('type', 'CheckpointHook') == 'CheckpointHook':
        # every process waits for rank 0's file: a failure elsewhere cannot stop the write
        checkpoint_config = dict(checkpoint_config, type='SyncedCheckpointHook')
    runner.register_training_hooks(cfg.lr_config, optimizer_config, checkpoint_config,
                                   cfg.log_config, cfg.get('momentum_config', None))
    # before the optimizer hook: a NaN/inf loss stops the run before it changes the weights
    runner.register_hook(NonFiniteLossHook(), priority='HIGH')
    runner.timestamp = timestamp

    if validate:
        val_dataset = build_dataset(cfg.data.val, dict(test_mode=True))
        val_loader_cfg = {**loader_cfg, 'samples_per_gpu': 1, 'shuffle': False,
                          **cfg.data.get('val_dataloader', {})}
        val_dataloader = build_dataloader(val_dataset, **val_loader_cfg)
        eval_cfg = copy.deepcopy(cfg.get('evaluation', {}))
        eval_cfg['by_epoch'] = 'IterBased' not in cfg.runner['type']
        eval_hook = GatherDistEvalHook if distributed else TrainIterEvalHook
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
        runner.resume(cfg.resume_from, map_location='cpu' if device == 'cpu' else
                      f'cuda:{torch.cuda.current_device()}',
                      any_batch_layout=cfg.get('resume_any_batch', False))
    elif cfg.load_from:
        load_weights(model, cfg.load_from, config=cfg.filename, strict=not cfg.get('load_partial', False),
                     logger=logger)
    runner.run(data_loaders, cfg.workflow)
