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


def strict_kwargs(cls: type) -> type:
    """Class decorator: ``cls(**kwargs)`` raises TypeError for any keyword no constructor in its
    chain accepts, naming it and the closest valid one."""
    init = cls.__init__
    valid = accepted_arguments(cls)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            raise TypeError(unknown_argument_message(unknown, valid))
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls
