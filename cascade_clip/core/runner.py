"""Runner whose checkpoints are written atomically and resume exactly."""
import errno
import os
import os.path as osp
import platform
import re
import shutil
from typing import Any, Dict, List, Optional

import mmcv
import torch.distributed as dist
from mmcv.runner import RUNNERS, CheckpointHook, IterBasedRunner
from mmcv.runner.checkpoint import save_checkpoint
from mmcv.utils import print_log

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
    """IterBasedRunner whose checkpoints are written atomically and resume exactly.

    ``iter_N.pth`` holds the state after N iterations and ``meta['iter'] == N``, so
    ``--resume-from iter_N.pth`` continues with iteration N + 1.

    ``meta['train_state']`` holds, for every rank, the random states (python, numpy, torch
    CPU/CUDA) and the position of each data loader (epoch, batches used in it, torch random
    state at its start; see ``ResumableLoader``). On resume each rank replays its loaders to
    that position and restores its random states, so that a resumed run computes the same
    values as an uninterrupted one (bit for bit on the CPU with the same number of processes
    and threads). Only tensors, python scalars and containers of them are stored: the meta
    loads with ``torch.load(weights_only=True)``.

    After an iteration that saved a checkpoint, the random states are set back to those the
    checkpoint holds (hooks that run after the save, such as evaluation, may draw random
    numbers): the uninterrupted run continues from exactly what a resumed run restores.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaders: List[ResumableLoader] = []
        self._captured: Optional[tuple] = None   # (iteration, this rank's state, save due)
        self._gathered: Optional[tuple] = None   # (iteration, every rank's state)
        self._saved_iter: Optional[int] = None   # completed iterations of the last save
        self._resume_state: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ state capture
    def _local_train_state(self) -> Dict[str, Any]:
        return {'random': get_random_states(), 'loaders': [ld.state_dict() for ld in self._loaders]}

    def _checkpoint_due(self) -> bool:
        """Whether a CheckpointHook saves at the end of this iteration (as it decides)."""
        for hook in self.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch:
                if hook.every_n_iters(self, hook.interval) or (hook.save_last and hook.is_last_iter(self)):
                    return True
        return False

    def call_hook(self, fn_name: str) -> None:
        if fn_name == 'after_train_iter':
            # after the forward pass; before the backward pass and the optimizer step (the
            # optimizer hook's work, which draws no random numbers) and the checkpoint hook
            state = self._local_train_state()
            due = self._checkpoint_due()
            self._captured = (self.iter, state, due)
            if self.world_size > 1 and due:
                # every rank's state goes into rank 0's checkpoint; a collective, so done
                # here on every rank rather than in the rank-0-only save
                states: List[Any] = [None] * self.world_size
                dist.all_gather_object(states, state)
                self._gathered = (self.iter, states)
        super().call_hook(fn_name)

    def _train_state_for_checkpoint(self) -> Dict[str, Any]:
        if self._captured is None or self._captured[0] != self.iter:
            self._captured = (self.iter, self._local_train_state(), True)
        if self.world_size == 1:
            ranks = [self._captured[1]]
        elif self._gathered is not None and self._gathered[0] == self.iter:
            ranks = self._gathered[1]
        else:
            # a save outside the CheckpointHook's schedule: the other ranks' states are unknown
            print_log('checkpoint saved outside the checkpoint schedule: only rank 0\'s random '
                      'state is stored, resuming from it will not be exact', self.logger, level=30)
            ranks = [self._captured[1]]
        return {'format': TRAIN_STATE_FORMAT, 'world_size': self.world_size, 'ranks': ranks}

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

    def train(self, data_loader, **kwargs):
        super().train(data_loader, **kwargs)
        captured = self._captured
        if captured is not None and captured[0] + 1 == self.iter and (
                captured[2] or self._saved_iter == self.iter):
            # continue from the random states the checkpoint holds (see the class docstring)
            set_random_states(captured[1]['random'])

    # ------------------------------------------------------------------ resuming
    def resume(self, checkpoint, resume_optimizer=True, map_location='default'):
        """MMCV's resume (weights, optimizer, iteration), plus the checkpoint's hook messages
        and its train state, which ``run`` applies to the data loaders."""
        kept: Dict[str, Any] = {}
        load = self.load_checkpoint

        def load_and_keep_meta(*args, **kwargs):
            ckpt = load(*args, **kwargs)
            kept['meta'] = ckpt.get('meta') or {}
            return ckpt

        # MMCV's IterBasedRunner.resume neither returns the checkpoint nor keeps its meta
        self.load_checkpoint = load_and_keep_meta
        try:
            super().resume(checkpoint, resume_optimizer=resume_optimizer, map_location=map_location)
        finally:
            del self.load_checkpoint
        meta = kept.get('meta', {})
        if self.meta is None:
            self.meta = {}
        # as MMCV's BaseRunner.resume: last checkpoint, best score, loss-scaler state, ...
        self.meta.setdefault('hook_msgs', {}).update(meta.get('hook_msgs') or {})
        state = meta.get('train_state')
        if state is None:
            print_log(f'{checkpoint} has no train state (random states, data position): the '
                      f'run continues at iteration {self.iter} but not exactly as an '
                      f'uninterrupted run would', self.logger, level=30)
        elif state.get('format') != TRAIN_STATE_FORMAT:
            raise ValueError(f'{checkpoint}: meta["train_state"] has format {state.get("format")!r}, '
                             f'this version reads format {TRAIN_STATE_FORMAT}')
        elif state['world_size'] != self.world_size or len(state['ranks']) != self.world_size:
            print_log(f'{checkpoint} holds the random states of {len(state["ranks"])} of '
                      f'{state["world_size"]} processes, this run has {self.world_size}: data '
                      f'order and random states are not restored', self.logger, level=30)
        else:
            self._resume_state = state['ranks'][self.rank]

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
        if self.rank == 0 and self.work_dir is not None:
            remove_stale_temporary_checkpoints(self.work_dir, self.logger)
        self._loaders = [ld if isinstance(ld, ResumableLoader) else ResumableLoader(ld, self.logger)
                         for ld in data_loaders]
        if self._resume_state is not None:
            self._apply_resume_state()
        super().run(self._loaders, workflow, max_iters=max_iters, **kwargs)
