"""Runner whose checkpoints are written atomically and resume exactly."""
import contextlib
import errno
import os
import os.path as osp
import platform
import re
import shutil
from typing import Any, Dict, List, Optional, Tuple

import mmcv
import torch
from mmcv.parallel import is_module_wrapper, scatter_kwargs
from mmcv.runner import (RUNNERS, GradientCumulativeOptimizerHook, IterBasedRunner,
                         OptimizerHook)
from mmcv.runner.checkpoint import save_checkpoint
from mmcv.utils import print_log
from torch.optim import Optimizer

from .hooks import TrainStateHook
from .random_state import get_random_states, set_random_states
from .resumable_loader import ResumableLoader

from ..utils.strict import strict_kwargs

# version of meta['train_state'] (random states and data-loader positions of every rank)
TRAIN_STATE_FORMAT = 1
_TMP_NAME = re.compile(r'^.+\.pth\.tmp-(\d+)$')


def atomic_save_checkpoint(model, filepath: str, optimizer=None, meta=None) -> None:
    """mmcv's save_checkpoint into a temporary file in the same folder, then an atomic rename:
    an interrupted save never leaves a truncated checkpoint under the final name."""
    tmp = f'{filepath}.tmp-{os.getpid()}'
    try:
        save_checkpoint(model, tmp, optimizer=optimizer, meta=meta)
        os.replace(tmp, filepath)
    except (OSError, RuntimeError) as e:
        # torch reports a full disk as a RuntimeError of its zip writer; name the file and
        # the space left (the temporary file is removed below, the last checkpoint kept)
        if isinstance(e, OSError) and e.errno != errno.ENOSPC or \
                not isinstance(e, OSError) and 'No space left' not in str(e):
            raise
        if osp.exists(tmp):
            os.remove(tmp)
        free = shutil.disk_usage(osp.dirname(osp.abspath(filepath))).free
        raise OSError(errno.ENOSPC, f'no space left on the device to write the checkpoint '
                      f'{filepath} ({free / 2**20:.1f} MiB free there); free some space or '
                      f'choose another --work-dir, then resume from the last checkpoint') from e
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporary_checkpoints(folder: str, logger='mmseg') -> List[str]:
    """Delete the ``*.pth.tmp-<pid>`` files that an interrupted ``atomic_save_checkpoint`` left
    in ``folder`` (not recursive) when process ``pid`` no longer runs on this machine.

    Files of a live process are kept (a save may be in progress); both are logged to ``logger``
    (a logger or a logger's name). Returns the removed paths.
    """
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        match = _TMP_NAME.match(name)
        path = osp.join(folder, name)
        if match is None or not osp.isfile(path):
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            print_log(f'kept {path}: process {pid} still runs (a checkpoint save may be in '
                      f'progress)', logger, level=30)
            continue
        os.remove(path)
        removed.append(path)
    if removed:
        print_log(f'removed {len(removed)} temporary checkpoint file(s) left by interrupted '
                  f'saves: {", ".join(removed)}', logger)
    return removed


@RUNNERS.register_module()
@strict_kwargs
class AtomicIterBasedRunner(IterBasedRunner):
    """IterBasedRunner with gradient accumulation over micro-batches, atomic checkpoints and
    exact resumes.

    **Micro-batches** (``micro_batches=K``): each iteration's loaded batch is split into K
    parts of equal size. The first K - 1 run forward and backward under DDP's ``no_sync()``
    (their gradients stay local and add up), the last one runs synchronised: its backward pass,
    done by the optimizer hook, all-reduces the accumulated gradients. One iteration is one
    optimizer step, so ``max_iters`` and the schedule count optimizer steps. Every part's loss
    is normalised by the mask count of the whole loaded batch averaged over the ranks
    (``model.count_train_masks``), which makes the gradient exactly the K-times larger batch's.
    The optimizer hook must keep the gradients it finds (``GradientCumulativeOptimizerHook``
    with ``cumulative_iters=1`` or ``LossScaleOptimizerHook``, whose loss scale the first
    K - 1 backward passes use too); ``train_segmentor`` sets this up from
    ``optimizer_config=dict(type='GradientCumulativeOptimizerHook', cumulative_iters=K)``.

    **Checkpoints**: ``iter_N.pth`` holds the state after N iterations and
    ``meta['iter'] == N``, so ``--resume-from iter_N.pth`` continues with iteration N + 1.
    ``meta['train_state']`` holds, for every rank, the random states (python, numpy, torch
    CPU/CUDA) and the position of each data loader (see ``ResumableLoader``), recorded by
    ``TrainStateHook`` (priority VERY_HIGH) after each iteration's forward pass. Only tensors,
    python scalars and containers of them are stored: the meta loads with
    ``torch.load(weights_only=True)``.

    **Resume** (``resume``): weights, optimizer, iteration, the hook messages and loss-scaler
    state of the meta, and the train state, which ``run`` applies: each rank replays its
    loaders to the saved position and restores its random states, so that the resumed run
    computes the same values as an uninterrupted one (bit for bit on the CPU with the same
    number of processes and threads). After an iteration that saved a checkpoint, the random
    states are set back to those the checkpoint holds (hooks after the save, such as the
    evaluation, draw random numbers): the uninterrupted run continues from exactly what a
    resumed run restores.

    Args (besides IterBasedRunner's):
        micro_batches: K, the parts of each loaded batch (1: plain steps).
    """

    # parts of a checkpoint's meta that resuming restores: the hooks' messages (last
    # checkpoint, best score) and the loss scaler's state (Fp16OptimizerHook's key)
    RESUMED_META_KEYS = ('hook_msgs', 'fp16')

    def __init__(self, *args, micro_batches: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if int(micro_batches) != micro_batches or micro_batches < 1:
            raise ValueError(f'micro_batches must be a whole number >= 1, got {micro_batches!r}')
        self.micro_batches = int(micro_batches)
        self._loaders: List[ResumableLoader] = []
        self._train_state = TrainStateHook()
        self.register_hook(self._train_state, priority='VERY_HIGH')
        self._saved_iter: Optional[int] = None   # completed iterations of the last save
        self._resume_state: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ train state
    def local_train_state(self) -> Dict[str, Any]:
        """This rank's random states and data-loader positions."""
        return {'random': get_random_states(), 'loaders': [ld.state_dict() for ld in self._loaders]}

    def _train_state_for_checkpoint(self) -> Dict[str, Any]:
        ranks = self._train_state.ranks if self._train_state.iter == self.iter else []
        if not ranks:
            # a save outside an iteration (e.g. by hand before training): this rank's state
            print_log('checkpoint saved outside a training iteration: only this process\'s '
                      'random state is stored', self.logger, level=30)
            ranks = [self.local_train_state()]
        return {'format': TRAIN_STATE_FORMAT, 'world_size': len(ranks), 'ranks': ranks}

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self, out_dir, filename_tmpl='iter_{}.pth', meta=None, save_optimizer=True,
                        create_symlink=True):
        if meta is None:
            meta = {}
        elif not isinstance(meta, dict):
            raise TypeError(f'meta should be a dict or None, but got {type(meta)}')
        meta = dict(meta)  # the CheckpointHook passes the same dict at every save
        if self.meta is not None:
            meta.update(self.meta)
        # Checkpoints are saved by CheckpointHook.after_train_iter, after the optimizer step of
        # iteration self.iter + 1 but before the runner increments its counter. MMCV records
        # self.iter, so resuming would repeat that iteration; record the completed count.
        meta.update(epoch=self.epoch + 1, iter=self.iter + 1)
        meta['train_state'] = self._train_state_for_checkpoint()
        filename = filename_tmpl.format(self.iter + 1)
        filepath = osp.join(out_dir, filename)
        optimizer = self.optimizer if save_optimizer else None
        atomic_save_checkpoint(self.model, filepath, optimizer=optimizer, meta=meta)
        self._saved_iter = self.iter + 1
        if create_symlink:
            dst = osp.join(out_dir, 'latest.pth')
            if platform.system() != 'Windows':
                mmcv.symlink(filename, dst)
            else:
                shutil.copy(filepath, dst)

    # ------------------------------------------------------------------ training
    def train(self, data_loader, **kwargs):
        """One iteration (MMCV's ``IterBasedRunner.train``), the batch in micro-batches."""
        self.model.train()
        self.mode = 'train'
        self.data_loader = data_loader
        self._epoch = data_loader.epoch
        data_batch = next(data_loader)
        self.data_batch = data_batch
        self.call_hook('before_train_iter')
        if self.micro_batches > 1:
            outputs = self._accumulated_train_step(data_batch, **kwargs)
        else:
            outputs = self.model.train_step(data_batch, self.optimizer, **kwargs)
        if not isinstance(outputs, dict):
            raise TypeError('model.train_step() must return a dict')
        if 'log_vars' in outputs:
            self.log_buffer.update(outputs['log_vars'], outputs['num_samples'])
        self.outputs = outputs
        self.call_hook('after_train_iter')
        del self.data_batch
        self._inner_iter += 1
        self._iter += 1
        if self._saved_iter == self.iter and self._train_state.iter == self.iter - 1:
            # continue from the random states the checkpoint holds (see the class docstring)
            set_random_states(self._train_state.local['random'])

    def _on_device(self, data_batch: dict) -> dict:
        """The loaded batch unwrapped from its DataContainers, on the model's device (what the
        model wrapper's scatter gives the model; a second scatter of it changes nothing)."""
        device_ids = list(getattr(self.model, 'device_ids', None) or [])
        _, kwargs = scatter_kwargs((), data_batch, device_ids[:1] or [-1])
        return kwargs[0]

    def _accumulated_train_step(self, data_batch: dict, **kwargs) -> dict:
        model = self.model
        module = model.module if is_module_wrapper(model) else model
        batch = self._on_device(data_batch)
        parts = micro_batch_bounds(len(batch['img_metas']), self.micro_batches)
        count = module.count_train_masks(batch, parts)
        scaler = getattr(self._optimizer_hook(), 'loss_scaler', None)
        log_vars: Dict[str, float] = {}
        total = parts[-1][1]
        for i, (s, e) in enumerate(parts):
            part = {k: v[s:e] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}
            last = i == len(parts) - 1
            local = model.no_sync() if (not last and hasattr(model, 'no_sync')) else contextlib.nullcontext()
            with local:
                outputs = model.train_step(part, self.optimizer, num_masks=count.num_masks,
                                           random_state=count.random_state(i), **kwargs)
                if not last:  # the last one is back-propagated (synchronised) by the hook
                    loss = outputs['loss']
                    (scaler.scale(loss) if scaler is not None else loss).backward()
            for k, v in outputs['log_vars'].items():
                # losses add up to the loaded batch's; other values: mean weighted by images
                log_vars[k] = log_vars.get(k, 0.0) + (1.0 if 'loss' in k else (e - s) / total) * v
        return dict(loss=outputs['loss'], log_vars=log_vars, num_samples=total)

    def _optimizer_hook(self) -> Optional[OptimizerHook]:
        hooks = [h for h in self.hooks if isinstance(h, OptimizerHook)]
        return hooks[0] if hooks else None

    def _check_optimizer_hook(self) -> None:
        if self.micro_batches == 1:
            return
        hook = self._optimizer_hook()
        if not isinstance(hook, GradientCumulativeOptimizerHook) or hook.cumulative_iters != 1:
            name = type(hook).__name__ if hook is not None else 'no optimizer hook'
            raise ValueError(
                f'micro_batches={self.micro_batches} needs an optimizer hook that steps once per '
                f'iteration on the gradients the micro-batches accumulated '
                f'(GradientCumulativeOptimizerHook or LossScaleOptimizerHook with '
                f'cumulative_iters=1), got {name}; configure '
                f'optimizer_config=dict(type=\'GradientCumulativeOptimizerHook\', '
                f'cumulative_iters={self.micro_batches}) and train with train_segmentor')

    # ------------------------------------------------------------------ resuming
    def resume(self, checkpoint, resume_optimizer=True, map_location='default'):
        """Restore everything a checkpoint of this runner holds: weights (strictly),
        optimizer, epoch and iteration, the meta keys of ``RESUMED_META_KEYS``, and the train
        state, which ``run`` applies to the data loaders and random states."""
        if map_location == 'default':
            map_location = (f'cuda:{torch.cuda.current_device()}' if torch.cuda.is_available()
                            else 'cpu')
        ckpt = self.load_checkpoint(checkpoint, map_location=map_location, strict=True)
        meta = ckpt.get('meta') or {}
        for key in ('epoch', 'iter'):
            if key not in meta:
                raise KeyError(f'{checkpoint}: meta has no {key!r} (not a checkpoint of a '
                               f'training run?)')
        self._epoch = meta['epoch']
        self._iter = self._inner_iter = meta['iter']
        if resume_optimizer and 'optimizer' in ckpt:
            if isinstance(self.optimizer, Optimizer):
                self.optimizer.load_state_dict(ckpt['optimizer'])
            else:  # a dict of optimizers
                for k in self.optimizer:
                    self.optimizer[k].load_state_dict(ckpt['optimizer'][k])
        self.meta = dict(self.meta or {})
        self.meta.setdefault('hook_msgs', {}).update(meta.get('hook_msgs') or {})
        for key in self.RESUMED_META_KEYS:
            if key != 'hook_msgs' and key in meta:
                self.meta[key] = meta[key]
        self._resume_state = self._rank_train_state(checkpoint, meta.get('train_state'))
        self.logger.info(f'resumed from epoch: {self.epoch}, iter {self.iter}')

    def _rank_train_state(self, checkpoint: str, state) -> Optional[Dict[str, Any]]:
        """This rank's part of a checkpoint's train state, or None (with a warning)."""
        if state is None:
            print_log(f'{checkpoint} has no train state (random states, data position): the '
                      f'run continues at iteration {self.iter} but not exactly as an '
                      f'uninterrupted run would', self.logger, level=30)
            return None
        if state.get('format') != TRAIN_STATE_FORMAT:
            raise ValueError(f'{checkpoint}: meta["train_state"] has format {state.get("format")!r}, '
                             f'this version reads format {TRAIN_STATE_FORMAT}')
        if state['world_size'] != self.world_size or len(state['ranks']) != self.world_size:
            print_log(f'{checkpoint} holds the random states of {len(state["ranks"])} of '
                      f'{state["world_size"]} processes, this run has {self.world_size}: data '
                      f'order and random states are not restored', self.logger, level=30)
            return None
        return state['ranks'][self.rank]

    def _apply_resume_state(self) -> None:
        state, self._resume_state = self._resume_state, None
        loader_states = state['loaders']
        if len(loader_states) != len(self._loaders):
            print_log(f'the checkpoint has the positions of {len(loader_states)} data loaders, '
                      f'this run has {len(self._loaders)}: data order and random states are not '
                      f'restored', self.logger, level=30)
            return
        if not self._loaders:
            set_random_states(state['random'])
        for loader, loader_state in zip(self._loaders, loader_states):
            inner = loader.loader
            if getattr(inner, 'persistent_workers', False) and getattr(inner, 'num_workers', 0) > 0:
                print_log('persistent data-loader workers keep their random state across '
                          'epochs: augmentations made in the workers are not restored exactly',
                          self.logger, level=30)
            # each loader replays its epoch when MMCV's IterLoader first iterates it; the
            # checkpoint's random states are set after the replay
            loader.resume_from(loader_state, state['random'])

    # ------------------------------------------------------------------ running
    def run(self, data_loaders, workflow, max_iters=None, **kwargs):
        self._check_optimizer_hook()
        if self.rank == 0 and self.work_dir is not None:
            remove_stale_temporary_checkpoints(self.work_dir, self.logger)
        self._loaders = [ld if isinstance(ld, ResumableLoader) else ResumableLoader(ld, self.logger)
                         for ld in data_loaders]
        if self._resume_state is not None:
            self._apply_resume_state()
        super().run(self._loaders, workflow, max_iters=max_iters, **kwargs)


def micro_batch_bounds(size: int, parts: int) -> List[Tuple[int, int]]:
    """(start, end) of ``parts`` consecutive slices of a batch of ``size`` (equal sizes when
    ``parts`` divides ``size``; the last one smaller otherwise)."""
    step = -(-size // parts)
    return [(s, min(s + step, size)) for s in range(0, size, step)]
