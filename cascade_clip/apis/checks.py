"""Checks where a model meets a dataset (the same classes, the same seen / unseen split) and
where a run meets the checkpoint it resumes."""
import logging
import os
import os.path as osp
import re
import zipfile
from typing import Any, Dict, Optional, Sequence

from mmcv.parallel import is_module_wrapper
from mmcv.runner.checkpoint import CheckpointLoader
from mmcv.utils import print_log

from ..utils.checkpoint import CheckpointError, compare_state_dict, describe_keys, state_dict_of
from ..utils.vocabulary_names import same_names


def check_model_matches_dataset(model, dataset, config: Optional[str] = None) -> None:
    """Raise ValueError unless ``model``'s vocabulary has ``dataset``'s classes, in order, and
    its unseen classes are the dataset's ``unseen_classes`` (both sides are named).

    A trained class reported as "unseen" (or the reverse) would make the seen / unseen / hIoU
    figures meaningless, and nothing downstream would notice.
    """
    vocab = model.vocabulary
    where = f' (config {config})' if config else ''
    ds_name = type(dataset).__name__
    if not same_names(vocab.names, dataset.CLASSES):
        raise ValueError(f'the model{where} has {len(vocab)} classes {list(vocab.names)[:6]}..., '
                         f'the dataset {ds_name} {len(dataset.CLASSES)} classes '
                         f'{list(dataset.CLASSES)[:6]}...: they must be the same, in order')
    ds_unseen = sorted(int(i) for i in getattr(dataset, 'unseen_classes', ()))
    if list(vocab.unseen) != ds_unseen:
        names = dataset.CLASSES
        raise ValueError(
            f'split mismatch{where}: the model\'s unseen classes (novel_class) are '
            f'{list(vocab.unseen)} {[names[i] for i in vocab.unseen]}, the dataset {ds_name}\'s '
            f'unseen_classes are {ds_unseen} {[names[i] for i in ds_unseen]}; define the split '
            f'once (the dataset config) and take it from there in the model config')


# ---------------------------------------------------------------------------- resuming
# meta key of the checkpoints written by tools/train.py: what a resume must find unchanged
RUN_META_KEY = 'training_run'
_CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def training_run_meta(model, cfg, world_size: int) -> Dict[str, Any]:
    """What ``check_resume`` compares, stored under ``meta[RUN_META_KEY]`` of every checkpoint:
    the seen class ids, and the batch layout (images per process and micro-batch, micro-batches
    per step, processes) that fixes the data order."""
    from .train import optimizer_hook_config  # (apis.train imports this module)
    model = model.module if is_module_wrapper(model) else model
    return dict(seen=[int(i) for i in model.vocabulary.seen],
                samples_per_gpu=int(_samples_per_gpu(cfg)),
                micro_batches=int(optimizer_hook_config(cfg.get('optimizer_config'),
                                                        (cfg.get('model') or {}).get('amp_dtype'))[1]),
                world_size=int(world_size))


def _samples_per_gpu(cfg) -> int:
    data = cfg.data
    return data.get('train_dataloader', {}).get('samples_per_gpu', data.get('samples_per_gpu'))


def check_resume(checkpoint: str, model, cfg, world_size: int, allow_other_batch: bool = False,
                 logger=None) -> None:
    """Refuse to resume ``checkpoint`` into a run it does not belong to, before any work.

    Compared: the classes (``meta['CLASSES']``), the seen / unseen split and the batch layout
    (``meta[RUN_META_KEY]``, see :func:`training_run_meta`), and every weight's name and shape
    (another prompt length would otherwise fail inside the optimizer). A different batch size,
    number of micro-batches or of processes changes which images each step sees: refused unless
    ``allow_other_batch`` (``tools/train.py --resume-any-batch``), then a warning is logged.
    A checkpoint without ``meta[RUN_META_KEY]`` (written by another tool) is checked for classes
    and shapes only, with a warning.

    Raises:
        ValueError (CheckpointError for the weights) naming what differs, both sides.
    """
    inner = model.module if is_module_wrapper(model) else model
    # through MMCV's loader registry, as the runner's resume reads it (local paths: safe_load)
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    meta = (ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    state_dict = state_dict_of(ckpt, checkpoint)
    del ckpt
    vocab = inner.vocabulary
    trained = meta.get('CLASSES')
    if trained is not None and not same_names(trained, vocab.names):
        extra = [n for n in trained if not any(same_names([n], [m]) for m in vocab.names)]
        lacking = [n for n in vocab.names if not any(same_names([n], [m]) for m in trained)]
        raise ValueError(
            f'cannot resume from {checkpoint}: it was trained on {len(trained)} classes, this run '
            f'has {len(vocab.names)}; only in the checkpoint: {_few(extra)}, only in this run: '
            f'{_few(lacking)}' + ('' if extra or lacking else ' (the same names in another order)')
            + '. Resume with the config the checkpoint was trained with, or start a new run '
            '(--load-from to start from its weights)')
    optional = dict(getattr(inner, 'OPTIONAL_STATE_KEYS', {}))
    own = inner.state_dict()
    # as load_weights: optional keys may be absent or sized for another class list
    state_dict = {k: v for k, v in state_dict.items()
                  if not (k in optional and (k not in own or own[k].shape != v.shape))}
    missing, unexpected, mismatched = compare_state_dict(inner, state_dict, optional)
    if missing or unexpected or mismatched:
        parts = [describe_keys(t, ks) for t, ks in (('keys of another shape', mismatched),
                                                     ('missing keys', missing),
                                                     ('unexpected keys', unexpected)) if ks]
        raise CheckpointError(
            f'cannot resume from {checkpoint}: its weights do not match the model of this run '
            f'({getattr(cfg, "filename", None) or "the config"}): ' + '; '.join(parts) + '. Resume with '
            'the config the checkpoint was trained with (e.g. the same backbone.num_tokens)')
    run = meta.get(RUN_META_KEY)
    if run is None:
        print_log(f'{checkpoint} does not record its seen / unseen split and batch layout '
                  f'(meta["{RUN_META_KEY}"], written by tools/train.py): only its classes and '
                  f'weight shapes were checked', logger, level=logging.WARNING)
        return
    seen = [int(i) for i in run.get('seen', ())]
    if seen != list(vocab.seen):
        names = vocab.names
        raise ValueError(
            f'cannot resume from {checkpoint}: it was trained with seen classes {seen}, this run '
            f'has {list(vocab.seen)}; unseen in the checkpoint '
            f'{[names[i] for i in range(len(names)) if i not in seen]}, in this run '
            f'{[names[i] for i in vocab.unseen]}. The split must stay the same through a run')
    now = dict(samples_per_gpu=int(_samples_per_gpu(cfg)),
               micro_batches=training_run_meta(inner, cfg, world_size)['micro_batches'],
               world_size=int(world_size))
    differ = [f'{k} {run.get(k)} -> {v}' for k, v in now.items() if run.get(k) != v]
    if not differ:
        return
    what = ', '.join(differ)
    if not allow_other_batch:
        raise ValueError(
            f'cannot resume from {checkpoint}: the batch layout differs ({what}; samples_per_gpu '
            f'is data.samples_per_gpu, micro_batches the accumulated micro-batches per step, '
            f'world_size the processes). It changes the images of every step, so the run would '
            f'not continue as it started. Resume with the same settings, or pass '
            f'--resume-any-batch to continue anyway')
    print_log(f'resuming {checkpoint} with another batch layout ({what}) as asked '
              f'(--resume-any-batch): the data order and the effective batch differ from the '
              f'run that wrote it', logger, level=logging.WARNING)


def _few(names: Sequence[str], n: int = 6) -> str:
    names = list(names)
    return '[]' if not names else str(names[:n])[:-1] + (f', ... ({len(names) - n} more)]'
                                                          if len(names) > n else ']')


def find_resume_checkpoint(work_dir: str, logger=None) -> Optional[str]:
    """The checkpoint ``--auto-resume`` continues from: ``work_dir/latest.pth`` when it points
    to a file, else the newest complete ``iter_N.pth`` (logged); None when there is none.

    MMSeg's ``find_latest_checkpoint`` fails with ``invalid literal for int()`` on a dangling
    ``latest.pth`` (its target deleted or moved)."""
    latest = osp.join(work_dir, 'latest.pth')
    if osp.isfile(latest):
        return latest
    found = []
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            match = _CHECKPOINT_NAME.match(name)
            path = osp.join(work_dir, name)
            # saves are atomic (a complete zip under the final name); a copied-in partial file
            # is skipped rather than failing the resume
            if match and osp.isfile(path) and zipfile.is_zipfile(path):
                found.append((int(match.group(1)), path))
    if not found:
        if osp.islink(latest):
            print_log(f'{latest} points to {os.readlink(latest)}, which does not exist, and '
                      f'{work_dir} holds no iter_N.pth: starting from the beginning', logger,
                      level=logging.WARNING)
        return None
    path = max(found)[1]
    if osp.lexists(latest):
        target = os.readlink(latest) if osp.islink(latest) else latest
        print_log(f'{latest} points to {target}, which does not exist: resuming from the newest '
                  f'complete checkpoint, {path}', logger, level=logging.WARNING)
    return path


# ---------------------------------------------------------------------------- numbers of a run
def check_training_values(cfg) -> None:
    """ValueError naming the key and value for a batch, worker count or schedule length that
    cannot train: ``samples_per_gpu`` < 1, ``workers_per_gpu`` < 0 (in ``data`` or
    ``data.train_dataloader``), ``runner.max_iters`` / ``max_epochs`` (or ``total_iters``) < 1.
    Without it torch fails with a message about its sampler, or the run ends doing nothing."""
    data = cfg.get('data') or {}
    train_loader = data.get('train_dataloader') or {}
    checks = [(f'data.{k}', data[k], low) for k, low in (('samples_per_gpu', 1),
                                                          ('workers_per_gpu', 0)) if k in data]
    checks += [(f'data.train_dataloader.{k}', train_loader[k], low)
               for k, low in (('samples_per_gpu', 1), ('workers_per_gpu', 0)) if k in train_loader]
    runner = cfg.get('runner') or {}
    checks += [(f'runner.{k}', runner[k], 1) for k in ('max_iters', 'max_epochs')
               if runner.get(k) is not None]
    if not runner and cfg.get('total_iters') is not None:
        checks.append(('total_iters', cfg.total_iters, 1))
    for key, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            what = 'a whole number' + (' >= 1' if low else ' >= 0')
            raise ValueError(f'{key}={value!r} cannot train: it must be {what}'
                             + (' (0 loads in the main process)' if 'workers' in key else ''))
