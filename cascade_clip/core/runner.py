"""The training loop: exact loss averaging over micro-batches and processes, atomic
checkpoints, exact resumes."""
import contextlib
import logging
import os
import os.path as osp
import re
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import mmcv
import torch
import torch.distributed as dist
from mmcv.parallel import is_module_wrapper, scatter_kwargs
from mmcv.runner import RUNNERS, GradientCumulativeOptimizerHook, IterBasedRunner, OptimizerHook
from mmcv.runner.checkpoint import save_checkpoint
from mmcv.utils import print_log
from torch.optim import Optimizer

from ..models.losses import LossSum
from ..utils.checkpoint import load_state_dict_checked, safe_load, state_dict_of
from ..utils.files import TEMPORARY_NAME, atomic_output
from ..utils.strict import strict_kwargs
from ..utils.vocabulary_names import same_names
from .random_state import get_random_states, set_random_states
from .resumable_loader import ResumableLoader

TRAIN_STATE_FORMAT = 1  # version of meta['train_state']
RUN_META_KEY = 'training_run'  # meta key of what a resume must find unchanged
_CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def atomic_save_checkpoint(model, filepath: str, optimizer=None, meta=None) -> None:
    """MMCV's ``save_checkpoint``, written whole or not at all (``atomic_output``)."""
    with atomic_output(filepath) as tmp:
        save_checkpoint(model, tmp, optimizer=optimizer, meta=meta)


def remove_stale_temporary_checkpoints(folder: str, logger='mmseg') -> List[str]:
    """Delete the temporary ``.pth`` files of interrupted saves in ``folder`` whose process no
    longer runs on this machine (those of a live process are kept and logged)."""
    removed = []
    for name in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        match = re.match(TEMPORARY_NAME, name)
        path = osp.join(folder, name)
        if match is None or match.group('ext') != '.pth' or not osp.isfile(path):
            continue
        pid = int(match.group('pid'))
        if pid != os.getpid() and _pid_alive(pid):
            print_log(f'kept {path}: process {pid} still runs (a save may be in progress)',
                      logger, level=logging.WARNING)
            continue
        os.remove(path)
        removed.append(path)
    if removed:
        print_log(f'removed temporary file(s) of interrupted saves: {", ".join(removed)}', logger)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def find_resume_checkpoint(work_dir: str, logger=None) -> Optional[str]:
    """What ``--auto-resume`` continues: ``work_dir/latest.pth`` when it points to a file, else
    the newest complete ``iter_N.pth`` (logged); None when there is none."""
    latest = osp.join(work_dir, 'latest.pth')
    if osp.isfile(latest):
        return latest
    found = [(int(m.group(1)), osp.join(work_dir, name))
             for name in (os.listdir(work_dir) if osp.isdir(work_dir) else [])
             for m in [_CHECKPOINT_NAME.match(name)] if m]
    found = [(n, p) for n, p in found if osp.isfile(p) and zipfile.is_zipfile(p)]
    target = os.readlink(latest) if osp.islink(latest) else None
    if not found:
        if target is not None:
            print_log(f'{latest} points to {target}, which does not exist, and {work_dir} holds no '
                      f'iter_N.pth: starting from the beginning', logger, level=logging.WARNING)
        return None
    path = max(found)[1]
    if osp.lexists(latest):
        print_log(f'{latest} points to {target}, which does not exist: resuming from the newest '
                  f'complete checkpoint, {path}', logger, level=logging.WARNING)
    return path


def micro_batch_bounds(size: int, parts: int) -> List[Tuple[int, int]]:
    """(start, end) of ``parts`` consecutive slices of a batch of ``size``."""
    step = -(-size // parts)
    return [(s, min(s + step, size)) for s in range(0, size, step)]


@RUNNERS.register_module()
@strict_kwargs
class AtomicIterBasedRunner(IterBasedRunner):
    """MMCV's IterBasedRunner with exact loss averaging, atomic checkpoints and exact resumes.

    The first K - 1 micro-batches back-propagate their loss sums under ``no_sync()``; their
    gradients are divided by the counts summed over micro-batches and processes, then the
    optimizer hook back-propagates the last one's averaged loss and steps. ``iter_N.pth`` holds
    every process's random states and data positions (``meta['train_state']``).

    Args (besides IterBasedRunner's):
        micro_batches: K, the slices of each loaded batch (one optimizer step per iteration).
    """

    # meta keys a resume restores: the hooks' messages and the loss scaler (MMCV's 'fp16')
    RESUMED_META_KEYS = ('hook_msgs', 'fp16')

    def __init__(self, *args, micro_batches: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(micro_batches, bool) or int(micro_batches) != micro_batches or micro_batches < 1:
            raise ValueError(f'micro_batches must be a whole number >= 1, got {micro_batches!r}')
        self.micro_batches = int(micro_batches)
        self._loaders: List[ResumableLoader] = []
        self._states: Optional[Tuple[int, List[Dict[str, Any]]]] = None  # (iter, every rank's)
        self._saved_iter: Optional[int] = None  # completed iterations of the last save
        self._resume_state: Optional[Dict[str, Any]] = None

    def train(self, data_loader, **kwargs):
        """One iteration: every micro-batch's forward and backward, then the hooks."""
        self.model.train()
        self.mode = 'train'
        self.data_loader = data_loader
        self._epoch = data_loader.epoch
        self.data_batch = next(data_loader)
        self.call_hook('before_train_iter')
        self.outputs = self._train_step(self.data_batch)
        self.log_buffer.update(self.outputs['log_vars'], self.outputs['num_samples'])
        self._record_train_states()
        self.call_hook('after_train_iter')
        del self.data_batch
        self._inner_iter += 1
        self._iter += 1
        if self._saved_iter == self.iter:
            # continue from the random states the checkpoint holds
            set_random_states(self._states[1][self.rank]['random'])

    def _train_step(self, data_batch: dict) -> dict:
        """Outputs whose ``loss`` is the last micro-batch's averaged loss (the others' gradients
        accumulated and scaled)."""
        model = self.model
        if self.micro_batches == 1:
            parts = [data_batch]
        else:  # unwrapped from the DataContainers (as the wrapper's scatter does), then sliced
            device_ids = list(getattr(model, 'device_ids', None) or [])
            batch = scatter_kwargs((), data_batch, device_ids[:1] or [-1])[1][0]
            parts = [{k: v[s:e] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}
                     for s, e in micro_batch_bounds(len(batch['img_metas']), self.micro_batches)]
        params = [p for p in model.parameters() if p.requires_grad]
        scaler = getattr(self._optimizer_hook(), 'loss_scaler', None)
        buffers: Dict[str, List[Optional[torch.Tensor]]] = {}  # unit -> accumulated gradients
        counts: Dict[str, float] = {}
        sums: Dict[str, Tuple[str, float]] = {}  # term -> (unit, sum over the micro-batches)
        metrics: Dict[str, float] = {}
        total = 0
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            with model.no_sync() if not last and hasattr(model, 'no_sync') else contextlib.nullcontext():
                out = model.train_step(part, self.optimizer)
                terms: Dict[str, LossSum] = out['loss_sums']
                units = _unit_counts(terms)
                for unit, n in units.items():
                    counts[unit] = counts.get(unit, 0) + n
                if not last:  # the gradient of each unit's sum, kept apart
                    for j, unit in enumerate(units):
                        loss = sum(t.value for t in terms.values() if t.unit == unit)
                        (scaler.scale(loss) if scaler is not None else loss).backward(
                            retain_graph=j < len(units) - 1)
                        acc = buffers.setdefault(unit, [None] * len(params))
                        for k, p in enumerate(params):
                            if p.grad is not None:
                                acc[k] = p.grad if acc[k] is None else acc[k].add_(p.grad)
                                p.grad = None
            n_images = out['num_samples']
            total += n_images
            for name, term in terms.items():
                sums[name] = (term.unit, sums.get(name, (None, 0.0))[1] + float(term.value.detach()))
            for name, value in out['log_vars'].items():
                if name not in terms and name != 'loss':
                    metrics[name] = metrics.get(name, 0.0) + float(value) * n_images
        scale, log_vars = self._average(counts, sums, {k: v / total for k, v in metrics.items()})
        for unit, acc in buffers.items():  # the earlier micro-batches' gradients, averaged
            for p, g in zip(params, acc):
                if g is not None:
                    g.mul_(scale[unit])
                    p.grad = g if p.grad is None else p.grad.add_(g)
        loss = sum(t.value * scale[t.unit] for t in terms.values())
        return dict(loss=loss, log_vars=log_vars, num_samples=total)

    def _average(self, counts: Dict[str, float], sums: Dict[str, Tuple[str, float]],
                 metrics: Dict[str, float]) -> Tuple[Dict[str, float], Dict[str, float]]:
        """Each unit's factor 1 / max(mean count over the processes, 1), and the logged values
        averaged over the processes (one all-reduce)."""
        units, names, others = sorted(counts), sorted(sums), sorted(metrics)
        values = torch.tensor([counts[u] for u in units] + [sums[n][1] for n in names]
                              + [metrics[m] for m in others], dtype=torch.float64)
        world = 1
        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            values = values.to('cuda' if dist.get_backend() == 'nccl' else 'cpu')
            dist.all_reduce(values)
        values = values.cpu().tolist()
        scale = {u: 1.0 / max(values[i] / world, 1.0) for i, u in enumerate(units)}
        log_vars = {n: values[len(units) + i] * scale[sums[n][0]] / world for i, n in enumerate(names)}
        log_vars['loss'] = sum(log_vars.values())
        log_vars.update({m: values[len(units) + len(names) + i] / world for i, m in enumerate(others)})
        return scale, log_vars

    def _optimizer_hook(self) -> Optional[OptimizerHook]:
        hooks = [h for h in self.hooks if isinstance(h, OptimizerHook)]
        return hooks[0] if hooks else None

    def _record_train_states(self) -> None:
        """Gather every process's random states and loader positions after the backward passes."""
        state = {'random': get_random_states(), 'loaders': [ld.state_dict() for ld in self._loaders]}
        states = [state]
        if self.world_size > 1:
            states = [None] * self.world_size
            dist.all_gather_object(states, state)
        self._states = (self.iter, states)

    def save_checkpoint(self, out_dir, filename_tmpl='iter_{}.pth', meta=None, save_optimizer=True,
                        create_symlink=True):
        meta = dict(meta or {})  # the CheckpointHook passes the same dict at every save
        meta.update(self.meta or {})
        # MMCV records self.iter, one less than the completed iterations: a resume would repeat one
        meta.update(epoch=self.epoch + 1, iter=self.iter + 1)
        if self._states is None or self._states[0] != self.iter:
            print_log('checkpoint saved outside a training iteration: only this process\'s '
                      'random state is stored', self.logger, level=logging.WARNING)
            states = [{'random': get_random_states(), 'loaders': []}]
        else:
            states = self._states[1]
        meta['train_state'] = {'format': TRAIN_STATE_FORMAT, 'world_size': len(states),
                               'ranks': states}
        filename = filename_tmpl.format(self.iter + 1)
        atomic_save_checkpoint(self.model, osp.join(out_dir, filename),
                               optimizer=self.optimizer if save_optimizer else None, meta=meta)
        self._saved_iter = self.iter + 1
        if create_symlink:
            mmcv.symlink(filename, osp.join(out_dir, 'latest.pth'))

    def resume(self, checkpoint: str, resume_optimizer: bool = True, map_location='cpu',
               any_batch_layout: bool = False) -> None:
        """Continue the run of ``checkpoint``; refused when its classes, seen classes, weights
        or batch layout (unless ``any_batch_layout``: a warning) are not this run's."""
        ckpt = safe_load(checkpoint, map_location=map_location)
        meta = (ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
        model = self.model.module if is_module_wrapper(self.model) else self.model
        self._check_run(checkpoint, meta, model, any_batch_layout)
        load_state_dict_checked(model, state_dict_of(ckpt, checkpoint), checkpoint, hint=(
            'Resume with the config the checkpoint was trained with (e.g. the same '
            'backbone.num_tokens)'), model_name='the model of this run (cannot resume)')
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

    def _check_run(self, path: str, meta: dict, model, any_batch_layout: bool) -> None:
        vocab = getattr(model, 'vocabulary', None)
        if vocab is None:  # a model without classes
            return
        trained = meta.get('CLASSES')
        if trained is not None and not same_names(trained, vocab.names):
            only_ckpt = [n for n in trained if not any(same_names([n], [m]) for m in vocab.names)]
            only_run = [n for n in vocab.names if not any(same_names([n], [m]) for m in trained)]
            raise ValueError(
                f'cannot resume from {path}: it was trained on {len(trained)} classes, this run '
                f'has {len(vocab.names)}; only in the checkpoint: {_few(only_ckpt)}, only in '
                f'this run: {_few(only_run)}'
                + ('' if only_ckpt or only_run else ' (the same names in another order)')
                + '. Resume with the config the checkpoint was trained with, or start a new run '
                '(--load-from to start from its weights)')
        run, now = meta.get(RUN_META_KEY), (self.meta or {}).get(RUN_META_KEY)
        if run is None or now is None:
            print_log(f'{path} does not record its seen classes and batch layout '
                      f'(meta["{RUN_META_KEY}"], written by tools/train.py): only its classes '
                      f'and weights were checked', self.logger, level=logging.WARNING)
            return
        if list(run.get('seen', ())) != list(vocab.seen):
            names = vocab.names
            raise ValueError(
                f'cannot resume from {path}: it was trained with seen classes {list(run["seen"])}, '
                f'this run has {list(vocab.seen)}; unseen in the checkpoint '
                f'{[names[i] for i in range(len(names)) if i not in run["seen"]]}, in this run '
                f'{[names[i] for i in vocab.unseen]}. The split must stay the same through a run')
        differ = [f'{k} {run.get(k)} -> {v}' for k, v in now.items() if k != 'seen' and run.get(k) != v]
        if not differ:
            return
        what = ', '.join(differ)
        if not any_batch_layout:
            raise ValueError(
                f'cannot resume from {path}: the batch layout differs ({what}; samples_per_gpu '
                f'is data.samples_per_gpu, micro_batches the accumulated micro-batches per step, '
                f'world_size the processes). It changes the images of every step, so the run would '
                f'not continue as it started. Resume with the same settings, or pass '
                f'--resume-any-batch to continue anyway')
        print_log(f'resuming {path} with another batch layout ({what}) as asked '
                  f'(--resume-any-batch): the data order and the effective batch differ from the '
                  f'run that wrote it', self.logger, level=logging.WARNING)

    def _rank_train_state(self, checkpoint: str, state) -> Optional[Dict[str, Any]]:
        """This process's part of a checkpoint's train state, or None (with a warning)."""
        if state is None:
            print_log(f'{checkpoint} has no train state (random states, data position): the '
                      f'run continues at iteration {self.iter} but not exactly as an '
                      f'uninterrupted run would', self.logger, level=logging.WARNING)
            return None
        if state.get('format') != TRAIN_STATE_FORMAT:
            raise ValueError(f'{checkpoint}: meta["train_state"] has format {state.get("format")!r}, '
                             f'this version reads format {TRAIN_STATE_FORMAT}')
        if state['world_size'] != self.world_size or len(state['ranks']) != self.world_size:
            print_log(f'{checkpoint} holds the random states of {len(state["ranks"])} of '
                      f'{state["world_size"]} processes, this run has {self.world_size}: data '
                      f'order and random states are not restored', self.logger, level=logging.WARNING)
            return None
        return state['ranks'][self.rank]

    def _apply_resume_state(self) -> None:
        state, self._resume_state = self._resume_state, None
        if len(state['loaders']) != len(self._loaders):
            print_log(f'the checkpoint has the positions of {len(state["loaders"])} data loaders, '
                      f'this run has {len(self._loaders)}: data order and random states are not '
                      f'restored', self.logger, level=logging.WARNING)
            return
        if not self._loaders:
            set_random_states(state['random'])
        for loader, loader_state in zip(self._loaders, state['loaders']):
            inner = loader.loader
            if getattr(inner, 'persistent_workers', False) and getattr(inner, 'num_workers', 0) > 0:
                print_log('persistent data-loader workers keep their random state across '
                          'epochs: augmentations made in the workers are not restored exactly',
                          self.logger, level=logging.WARNING)
            # each loader replays its epoch when first iterated, then sets the random states
            loader.resume_from(loader_state, state['random'])

    def run(self, data_loaders, workflow, max_iters=None, **kwargs):
        if self.micro_batches > 1:
            hook = self._optimizer_hook()
            if not isinstance(hook, GradientCumulativeOptimizerHook) or hook.cumulative_iters != 1:
                raise ValueError(
                    f'micro_batches={self.micro_batches} needs an optimizer hook that steps once '
                    f'per iteration on the accumulated gradients (GradientCumulativeOptimizerHook '
                    f'or LossScaleOptimizerHook with cumulative_iters=1), got '
                    f'{type(hook).__name__}; train with train_segmentor, which sets it up from '
                    f'optimizer_config.cumulative_iters')
        if self.rank == 0 and self.work_dir is not None:
            remove_stale_temporary_checkpoints(self.work_dir, self.logger)
        self._loaders = [ld if isinstance(ld, ResumableLoader) else ResumableLoader(ld, self.logger)
                         for ld in data_loaders]
        if self._resume_state is not None:
            self._apply_resume_state()
        super().run(self._loaders, workflow, max_iters=max_iters, **kwargs)


def _unit_counts(terms: Dict[str, LossSum]) -> Dict[str, float]:
    """The count of each unit of a micro-batch's terms (terms of one unit must agree)."""
    counts: Dict[str, float] = {}
    for name, term in sorted(terms.items()):
        if counts.setdefault(term.unit, float(term.count)) != float(term.count):
            raise ValueError(f'loss terms of unit {term.unit!r} report different counts '
                             f'({counts[term.unit]} and {term.count}, {name}): a unit has one count')
    return counts


def _few(names: Sequence[str], n: int = 6) -> str:
    names = list(names)
    return '[]' if not names else str(names[:n])[:-1] + (f', ... ({len(names) - n} more)]'
                                                          if len(names) > n else ']')
