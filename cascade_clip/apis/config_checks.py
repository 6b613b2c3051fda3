"""Config sections checked against the arguments their classes accept, before any work: an
unknown key is an error that suggests the right one."""
# MMCV builds hooks late and some pass unknown keys on: checkpoint_config=dict(intervl=...) would
# train the whole run and fail at its first save.
import difflib
import importlib.util
import inspect
from typing import Any, Iterable, Iterator, List, Optional, Set, Tuple

from mmcv.runner import HOOKS, RUNNERS
from mmcv.utils import Registry
from mmseg.core import DistEvalHook, EvalHook
from mmseg.datasets import DATASETS, build_dataloader
from torch.utils.data import DataLoader

from ..models.segmentors.test_cfg import check_test_cfg
from ..utils.strict import accepted_arguments, unknown_argument_message

# the runner train_segmentor builds when the config has no runner section
DEFAULT_RUNNER = 'AtomicIterBasedRunner'
# runner arguments train_segmentor gives itself (a config value would be overridden or clash)
RUNNER_GIVEN = {'model', 'batch_processor', 'optimizer', 'work_dir', 'logger', 'meta'}
# the evaluation hooks get their data loader from train_segmentor
EVAL_GIVEN = {'dataloader'}
# MMCV's register_logger_hooks reads only these two keys of log_config
LOG_CONFIG_KEYS = {'interval', 'hooks'}
# logger hooks that import a package only when the run starts (after the work dir and log)
LOGGER_PACKAGES = {'TensorboardLoggerHook': 'tensorboard', 'WandbLoggerHook': 'wandb',
                   'MMSegWandbHook': 'wandb'}
# data keys holding the datasets and the per-split loader overrides
DATA_SPLIT_KEYS = {'train', 'val', 'test', 'train_dataloader', 'val_dataloader', 'test_dataloader'}
# loader arguments the tools set from the launch (number of processes, distributed or not)
LOADER_GIVEN = {'dataset', 'num_gpus', 'dist'}
# DataLoader arguments build_dataloader sets itself (batch_sampler would clash with its batch_size)
DATALOADER_SET_BY_BUILDER = {'dataset', 'batch_size', 'sampler', 'batch_sampler', 'num_workers',
                             'collate_fn', 'pin_memory', 'shuffle', 'worker_init_fn', 'drop_last',
                             'persistent_workers'}


def _parameters(func, drop: Iterable[str] = ()) -> Set[str]:
    """Named keyword parameters of ``func`` (unwrapped), without ``self`` and ``drop``."""
    func = inspect.unwrap(func)
    names = {p.name for p in inspect.signature(func).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {'self'} - set(drop)


def loader_keys() -> Set[str]:
    """Keys of ``data`` (and its ``*_dataloader`` dicts) that ``build_dataloader`` accepts."""
    return ((_parameters(build_dataloader) - LOADER_GIVEN)
            | (_parameters(DataLoader.__init__) - DATALOADER_SET_BY_BUILDER))


class _Problems:
    """The messages of every section, so that one run names all of them."""

    def __init__(self):
        self.messages: List[str] = []

    def keys(self, where: str, given: Iterable, valid: Set[str], note: str = '') -> None:
        unknown = [k for k in given if k not in valid]
        if unknown:
            self.messages.append(f'{where}: {unknown_argument_message(unknown, valid, "key")}{note}')

    def registered(self, where: str, registry: Registry, name) -> Optional[type]:
        """The class registered as ``name``, or None with a did-you-mean message."""
        if isinstance(name, type):  # MMCV also builds from a class given as the type
            return name
        if name is None:
            self.messages.append(f"{where}: missing (a registered {registry.name} type)")
            return None
        cls = registry.get(name) if isinstance(name, str) else None
        if cls is None:
            self.messages.append(f'{where}: {unknown_argument_message([name], registry.module_dict, "type")}')
        return cls


def _check_hook(problems: _Problems, where: str, cfg: dict, default_type: Optional[str] = None,
                extra: Set[str] = frozenset()) -> Optional[type]:
    hook_type = cfg.get('type', default_type)
    cls = problems.registered(f'{where}.type', HOOKS, hook_type)
    if cls is not None:
        problems.keys(where, cfg, accepted_arguments(cls) | {'type'} | set(extra))
    return cls


def _runner_class(cfg) -> Optional[type]:
    runner = cfg.get('runner') or {}
    return RUNNERS.get(runner.get('type', DEFAULT_RUNNER))


def _check_runner(problems: _Problems, cfg) -> None:
    runner = cfg.get('runner')
    if runner is None:
        return
    cls = problems.registered('runner.type', RUNNERS, runner.get('type'))
    if cls is not None:
        problems.keys('runner', runner, (accepted_arguments(cls) - RUNNER_GIVEN) | {'type'})


def _check_checkpoint_config(problems: _Problems, cfg) -> None:
    ckpt = cfg.get('checkpoint_config')
    if ckpt is None:
        return
    extra: Set[str] = set()
    runner = _runner_class(cfg)
    cls = HOOKS.get(ckpt.get('type', 'CheckpointHook'))
    if runner is not None and cls is not None and issubclass(cls, HOOKS.get('CheckpointHook')):
        # CheckpointHook hands its other keyword arguments to runner.save_checkpoint
        extra = _parameters(runner.save_checkpoint, drop=('out_dir', 'save_optimizer'))
    _check_hook(problems, 'checkpoint_config', ckpt, 'CheckpointHook', extra)


def _check_evaluation(problems: _Problems, cfg) -> None:
    evaluation = cfg.get('evaluation')
    if evaluation is None:
        return
    valid = (accepted_arguments(EvalHook) | accepted_arguments(DistEvalHook)) - EVAL_GIVEN
    # the hooks pass their other keyword arguments to the validation dataset's evaluate()
    val = (cfg.get('data') or {}).get('val') or {}
    dataset = DATASETS.get(val.get('type')) if isinstance(val.get('type'), str) else None
    if dataset is not None:
        valid |= _parameters(dataset.evaluate, drop=('results', 'logger'))
    problems.keys('evaluation', evaluation, valid)


def _check_log_config(problems: _Problems, cfg) -> None:
    log_config = cfg.get('log_config')
    if log_config is None:
        return
    problems.keys('log_config', log_config, LOG_CONFIG_KEYS,
                  note=" (MMCV reads only 'interval' and 'hooks'; a logger's own options, "
                  "e.g. by_epoch, go in its dict in hooks)")
    for i, hook in enumerate(log_config.get('hooks') or []):
        # register_logger_hooks gives each hook log_config.interval
        cls = _check_hook(problems, f'log_config.hooks[{i}]', hook)
        package = LOGGER_PACKAGES.get(getattr(cls, '__name__', None))
        if package is not None and not _installed(package):
            problems.messages.append(f"log_config.hooks[{i}]: {cls.__name__} needs the package "
                                     f"'{package}', which is not installed (pip install {package})")


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _check_optimizer_config(problems: _Problems, cfg) -> None:
    optimizer_config = cfg.get('optimizer_config')
    if optimizer_config is not None:
        _check_hook(problems, 'optimizer_config', optimizer_config, 'OptimizerHook')


def _check_lr_config(problems: _Problems, cfg) -> None:
    lr_config = cfg.get('lr_config')
    if lr_config is None:
        return
    policy = lr_config.get('policy')
    if policy is None:
        problems.messages.append("lr_config: needs a 'policy' (e.g. 'poly')")
        return
    # MMCV's register_lr_hook: 'poly' -> PolyLrUpdaterHook (names with capitals stay as they are)
    suffix = 'LrUpdaterHook'
    lower = isinstance(policy, str) and policy == policy.lower()
    cls = HOOKS.get(f'{policy.title() if lower else policy}{suffix}')
    if cls is None:
        names = [k[:-len(suffix)] for k in HOOKS.module_dict if k.endswith(suffix)]
        names = [n.lower() for n in names] if lower else names
        problems.messages.append(
            f'lr_config.policy: {unknown_argument_message([policy], names, "policy")}')
    else:
        problems.keys('lr_config', lr_config, accepted_arguments(cls) | {'policy'})


def _check_test_cfg(problems: _Problems, cfg) -> None:
    for where, test_cfg in (('model.test_cfg', (cfg.get('model') or {}).get('test_cfg')),
                            ('test_cfg', cfg.get('test_cfg'))):
        if test_cfg is not None:
            try:
                check_test_cfg(test_cfg, where)
            except ValueError as e:
                problems.messages.append(str(e))


def _check_data(problems: _Problems, cfg) -> None:
    data = cfg.get('data')
    if data is None:
        return
    valid = loader_keys()
    for where, section, extra in [('data', data, DATA_SPLIT_KEYS)] + [
            (f'data.{k}', data[k], set()) for k in sorted(DATA_SPLIT_KEYS) if k.endswith('_dataloader')
            and data.get(k) is not None]:
        given = [k for k in section if k in LOADER_GIVEN]
        if given:
            problems.messages.append(f'{where}: {", ".join(map(repr, given))} must not be set: the '
                                     f'tools give the data loader the number of processes and '
                                     f'whether the run is distributed')
        problems.keys(where, [k for k in section if k not in LOADER_GIVEN], valid | extra)


def _check_training_values(problems: _Problems, cfg) -> None:
    """Batch sizes < 1, worker counts < 0 and schedules shorter than one iteration."""
    data = cfg.get('data') or {}
    sections = [('data', data), ('data.train_dataloader', data.get('train_dataloader') or {})]
    checks = [(f'{where}.{k}', section[k], low) for where, section in sections
              for k, low in (('samples_per_gpu', 1), ('workers_per_gpu', 0)) if k in section]
    runner = cfg.get('runner') or {}
    checks += [(f'runner.{k}', runner[k], 1) for k in ('max_iters', 'max_epochs')
               if runner.get(k) is not None]
    if not runner and cfg.get('total_iters') is not None:
        checks.append(('total_iters', cfg.total_iters, 1))
    for key, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.messages.append(
                f'{key}={value!r} cannot train: it must be a whole number >= {low}'
                + (' (0 loads in the main process)' if 'workers' in key else ''))


TRAIN_CHECKS = (_check_training_values, _check_runner, _check_checkpoint_config, _check_evaluation, _check_log_config,
                _check_optimizer_config, _check_lr_config, _check_test_cfg, _check_data)
# tools/test.py builds no runner or hooks: only what it reads
TEST_CHECKS = (_check_test_cfg, _check_data)


def check_config(cfg, mode: str = 'train') -> None:
    """Refuse (ValueError naming the file) every unknown key or invalid value of the sections
    ``mode`` ('train' or 'test') uses."""
    if mode not in ('train', 'test'):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    problems = _Problems()
    for check in TRAIN_CHECKS if mode == 'train' else TEST_CHECKS:
        check(problems, cfg)
    if problems.messages:
        name = getattr(cfg, 'filename', None) or '(not from a file)'
        raise ValueError(f'config {name}:\n  ' + '\n  '.join(problems.messages))


# Top-level keys that the tools, MMSeg and MMCV read. Any other is a variable of the config files
# (img_norm_cfg, ...), read while they load: overriding it afterwards would change nothing.
READ_KEYS = {
    'model', 'data', 'optimizer', 'optimizer_config', 'lr_config', 'momentum_config', 'runner',
    'total_iters', 'checkpoint_config', 'evaluation', 'log_config', 'log_level', 'dist_params',
    'load_from', 'resume_from', 'workflow', 'cudnn_benchmark', 'find_unused_parameters',
    'custom_imports', 'custom_hooks', 'cross_dataset', 'fp16', 'work_dir', 'gpu_ids', 'seed',
    'device', 'auto_resume', 'train_cfg', 'test_cfg', 'opencv_num_threads', 'mp_start_method'}


def _leaves(value: Any, prefix: str) -> Iterator[Tuple[str, Any]]:
    """(dotted key, value) of every dict entry under ``value`` (list items as .N)."""
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, (list, tuple)) else ())
    for k, v in items:
        key = f'{prefix}.{k}'
        yield key, v
        yield from _leaves(v, key)


def check_overrides(cfg, options: Optional[dict]) -> None:
    """Refuse a ``--cfg-options`` key that nothing reads (a config-file variable or an unknown
    key), given the config before the options are merged."""
    problems = []
    for option in options or {}:
        top = option.split('.')[0]
        if top in READ_KEYS:
            continue
        if top not in cfg:
            known = sorted(READ_KEYS | set(cfg))
            close = difflib.get_close_matches(top, known, n=1, cutoff=0.6)
            problems.append(f'{option}: no such key' + (f" (did you mean '{close[0]}'?)" if close else
                                                         f'; the config reads {", ".join(sorted(READ_KEYS & set(cfg)))}'))
            continue
        used = [(k, v) for section in sorted(READ_KEYS & set(cfg)) for k, v in _leaves(cfg[section], section)]
        leaf = option.split('.')[-1]
        same_name = [k for k, _ in used if k.split('.')[-1] == leaf]
        same_value = [k for k, v in used if _same(v, _get(cfg, option))]
        where = same_name or same_value
        problems.append(
            f'{option}: {top!r} is a variable of the config files, read only while they are '
            f'loaded, so overriding it changes nothing; override '
            + (f'the key(s) it set: {", ".join(where[:6])}' + (' ...' if len(where) > 6 else '')
               if where else 'the keys of the model or data sections that use it'))
    if problems:
        name = getattr(cfg, 'filename', None) or '(not from a file)'
        raise ValueError(f'--cfg-options for config {name}:\n  ' + '\n  '.join(problems))


def _get(cfg, dotted: str) -> Any:
    value = cfg
    for part in dotted.split('.'):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if b is _MISSING or isinstance(a, (dict, bool)) or a is None or a in ([], ()):
        return False
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: B902 - values that do not compare
        return False
