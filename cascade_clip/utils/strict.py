"""Strict constructor arguments: an unknown config key is an error that suggests the right one
(a misspelt key would otherwise vanish into a ``**kwargs``)."""
import difflib
import functools
import inspect
from typing import Iterable, List, Set


def accepted_arguments(cls: type) -> Set[str]:
    """Names ``cls(...)`` accepts, following ``**kwargs`` up the MRO."""
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
    """"unknown argument 'x' (did you mean 'y'?)" for each unknown name (``what``: 'argument')."""
    valid = sorted(valid)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"
        parts.append(f"unknown {what} '{name}' ({hint})")
    return '; '.join(parts)


# Keys of the published configs that mean nothing here -> the values they may take; a class lists
# those it accepts and drops in ``PUBLISHED_KEYS``.
PUBLISHED_KEY_VALUES = {
    # MMSeg's ResNet argument, copied into the published ViT and text-encoder dicts
    'style': ('pytorch', 'caffe'),
}


def drop_published_keys(cls: type, kwargs: dict) -> dict:
    """``kwargs`` without the ``PUBLISHED_KEYS`` of ``cls``, their values checked."""
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
    chain accepts, naming the closest valid one; ``PUBLISHED_KEYS`` are dropped."""
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
