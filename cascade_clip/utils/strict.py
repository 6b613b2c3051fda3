"""Strict constructor arguments: an unknown config key is an error that suggests the right one.

MMCV builds modules from config dicts, so a misspelt key (``self_trainning=True``) would be
swallowed by a ``**kwargs`` or reported as a bare ``unexpected keyword argument``. The
:func:`strict_kwargs` class decorator checks the keyword arguments against every name the
constructor accepts (following ``**kwargs`` into the base classes' constructors) before
anything is built.
"""
import difflib
import functools
import inspect
from typing import Iterable, List, Set


def accepted_arguments(cls: type) -> Set[str]:
    """Names ``cls(...)`` accepts: its ``__init__``'s parameters and, while a constructor
    forwards ``**kwargs``, those of the next constructor up the MRO."""
    names: Set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None or klass is object:
            continue
        init = getattr(init, '__wrapped__', init)
        params = list(inspect.signature(init).parameters.values())[1:]  # drop self
        names.update(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def unknown_argument_message(unknown: List[str], valid: Iterable[str], what: str = 'argument') -> str:
    """"unknown argument 'x' (did you mean 'y'?)" for each unknown name (``what``: the word
    for a name, e.g. 'key' for config sections)."""
    valid = sorted(valid)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"
        parts.append(f"unknown {what} '{name}' ({hint})")
    return '; '.join(parts)


# Keys the published config files carry that mean nothing to a class here, with the values
# they may take. A class lists those it accepts in ``PUBLISHED_KEYS``; they are checked and
# dropped before its constructor runs.
PUBLISHED_KEY_VALUES = {
    # MMSeg's ResNet argument (where a bottleneck's stride-2 convolution sits), copied into the
    # published configs' ViT and text-encoder dicts; it has no meaning for a transformer
    'style': ('pytorch', 'caffe'),
}


def drop_published_keys(cls: type, kwargs: dict) -> dict:
    """``kwargs`` without the ``PUBLISHED_KEYS`` of ``cls``; ValueError for a value the
    published code would not accept either."""
    keys = getattr(cls, 'PUBLISHED_KEYS', ())
    out = dict(kwargs)
    for key in keys:
        if key in out:
            value = out.pop(key)
            allowed = PUBLISHED_KEY_VALUES.get(key)
            if allowed is not None and value not in allowed:
                raise ValueError(f'{cls.__name__}: {key}={value!r} is not one of {list(allowed)} '
                                 f'(a key of the published configs, accepted and unused)')
    return out


def strict_kwargs(cls: type) -> type:
    """Class decorator: ``cls(**kwargs)`` raises TypeError for any keyword no constructor in its
    chain accepts, naming it and the closest valid one. Keys the class lists in
    ``PUBLISHED_KEYS`` (see :data:`PUBLISHED_KEY_VALUES`) are accepted and dropped."""
    init = cls.__init__
    valid = accepted_arguments(cls)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        kwargs = drop_published_keys(cls, kwargs)
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            raise TypeError(unknown_argument_message(unknown, valid))
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls
