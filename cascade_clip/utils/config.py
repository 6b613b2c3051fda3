"""Config files in and out: read (naming a missing ``custom_imports`` module), options parsed
without losing characters, written as text that loads back with the same values."""
# MMCV's pretty_text writes '{value}' (an apostrophe or backslash breaks it) and its DictAction
# drops every space of an option's value.
import ast
import importlib
import keyword
import math
import numbers
import os.path as osp
import re
import warnings
from argparse import ArgumentParser, Namespace
from typing import Any, Sequence

from mmcv.utils import Config, DictAction

from .files import atomic_output

DUMP_HEADER = '# Resolved config of'  # first line of a file written by write_config


def read_config(path: str) -> Config:
    """``Config.fromfile(path)``; an ImportError naming a ``custom_imports`` module that fails."""
    cfg = Config.fromfile(path, import_custom_modules=False)
    custom = cfg.get('custom_imports') or {}
    imports = custom.get('imports') or []
    for name in [imports] if isinstance(imports, str) else imports:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if custom.get('allow_failed_imports', False):  # as MMCV: a warning
                warnings.warn(f'{name} failed to import and is ignored.', UserWarning)
                continue
            raise ImportError(f'config {path}: custom_imports.imports names the module {name!r}, '
                              f'which cannot be imported ({type(e).__name__}: {e}); install it '
                              f'or correct the name') from e
    return cfg


class _Literal(str):
    """A string that formats as the body of a single-quoted literal (``pretty_text`` adds the
    quotes)."""

    def __format__(self, spec: str) -> str:
        # with a '"' added, repr always quotes with ' (escaping any ' inside): drop both ends
        return repr(str(self) + '"')[1:-2]


class _NonFinite(float):
    """nan / inf / -inf, written as ``float('nan')`` (a config file is Python: it loads back)."""

    def __repr__(self) -> str:
        return f"float('{float.__repr__(self)}')"

    __str__ = __repr__


def _plain(value: Any, key: str) -> Any:
    """``value`` with strings as :class:`_Literal` and numbers as Python's own (not
    ``np.int64(5)``); ValueError naming ``key`` for what no config file can hold."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            name = f'{key}.{k}' if key else str(k)
            if isinstance(k, str) and keyword.iskeyword(k):
                raise ValueError(f'config key {name}: the Python keyword {k!r} cannot be a key of '
                                 f'a config file (dict({k}=...) is not valid Python)')
            if not isinstance(k, (str, int)):
                raise ValueError(f'config key {name}: a key of type {type(k).__name__} cannot be '
                                 f'written to a config file')
            out[_Literal(k) if isinstance(k, str) else k] = _plain(v, name)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f'{key}.{i}') for i, v in enumerate(value))
    if isinstance(value, str):
        return _Literal(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else _NonFinite(value)
    raise ValueError(f'config key {key}: the value {value!r:.80} ({type(value).__name__}) cannot be '
                     f'written to a config file (expected strings, numbers, True/False/None, lists, '
                     f'tuples and dicts of them)')


def config_text(cfg: Config) -> str:
    """The config as Python source in MMCV's layout that loads back with the same values;
    ValueError naming the key of a value that cannot be written."""
    for key in cfg:
        if not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f'config key {key!r}: a top-level key of a config file must be a '
                             f'Python name')
    return Config(_plain(cfg._cfg_dict.to_dict(), '')).pretty_text


def config_values(cfg: Config) -> str:
    """The config's values as one line, the same once loaded back from :func:`write_config`'s
    file; a fast stand-in for :func:`config_text` (YAPF takes seconds on 847 class names)."""
    return repr(_plain(cfg._cfg_dict.to_dict(), ''))


def write_config(cfg: Config, path: str, source: str) -> None:
    """Write :func:`config_text` of ``cfg`` to ``path`` under a first line naming ``source``."""
    text = config_text(cfg)
    source = ' '.join(str(source).splitlines())  # a line break would end the comment
    with atomic_output(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(f'{DUMP_HEADER} {source} (_base_ files merged, options applied)\n{text}')


def is_config_dump(path: str) -> bool:
    """True when ``path`` is a file written by :func:`write_config`."""
    if not osp.isfile(path):
        return False
    with open(path, encoding='utf-8', errors='replace') as f:
        return f.readline().startswith(DUMP_HEADER)


def dump_path(config: str, work_dir: str) -> str:
    """Where the resolved ``config`` goes in ``work_dir``: ``<name>`` or ``<stem>.resolved<ext>``,
    whichever is free or an earlier dump; FileExistsError when both are the user's files."""
    stem, ext = osp.splitext(osp.basename(config))
    paths = [osp.join(work_dir, f'{stem}{ext}'), osp.join(work_dir, f'{stem}.resolved{ext}')]
    for path in paths:
        if not osp.exists(path) or (not osp.samefile(path, config) and is_config_dump(path)):
            return path
    raise FileExistsError(f'{paths[0]} and {paths[1]} are not config dumps of an earlier run (one is '
                          f'the config {config} itself, or files of yours): neither is overwritten; '
                          f'move one away or choose another --work-dir')


_INSIDE_AN_ITEM = re.compile(r'[^\s,\[\]()]\s+[^\s,\[\]()]')  # a space MMCV's list syntax drops


def parse_option_value(text: str) -> Any:
    """The value of one ``KEY=VALUE`` option by MMCV's ``DictAction`` rules, a single value's
    text kept whole and Python literals taken exactly; refuses list items with spaces."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, str):
            return value
    if text[:1] in '[(':
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, (list, tuple)):
            return value
    if not any(c in text for c in ',[]()'):
        return DictAction._parse_int_float_bool(text)
    if _INSIDE_AN_ITEM.search(text):
        raise ValueError(f'{text!r} is read as a list (commas or brackets), whose items lose their '
                         f'spaces in MMCV\'s syntax: write the value as a Python literal, e.g. '
                         f'"[\'a b\', \'c\']", or as a quoted string, e.g. "\'a b, c\'"')
    return DictAction._parse_iterable(text)


class ConfigOptions(DictAction):
    """``--cfg-options KEY=VALUE ...`` into a dict, values by :func:`parse_option_value`."""

    def __call__(self, parser: ArgumentParser, namespace: Namespace, values: Sequence[str],
                 option_string: str = None) -> None:
        options = {}
        for item in values:
            key, sep, text = item.partition('=')
            if not sep or not key:
                parser.error(f'{option_string}: {item!r} is not KEY=VALUE')
            try:
                options[key] = parse_option_value(text)
            except ValueError as e:
                parser.error(f'{option_string} {key}: {e}')
        setattr(namespace, self.dest, options)
