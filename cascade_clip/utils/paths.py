"""Paths: names that must stay inside a folder, the user's paths, outputs apart from inputs.

A name read from a user's or a downloaded file (a split entry, an image's relative file name)
is joined to a folder the user chose. ``osp.join`` lets an absolute name replace the folder
and ``..`` climb out of it, so such a name could read or overwrite files anywhere; these
helpers refuse it. The check is on the name itself (lexical): symbolic links the user made
inside their own folders are theirs and are followed as usual.

A path the user gives is relative to the directory the command started in
(:func:`user_path`); an output folder must not be, contain or be inside an input folder
(:func:`check_outputs_apart`, on the resolved paths).
"""
import os.path as osp
from typing import Dict, Iterable, Optional


def escapes(name: str, folder: str = '') -> bool:
    """True when ``osp.join(folder, name)`` would not be inside ``folder``: ``name`` is absolute
    (or has a drive), or climbs out of ``folder`` with ``..`` once normalised (``a/../b`` stays
    inside; with ``folder`` given, ``../f/x`` from ``f`` does too)."""
    name = str(name)
    if osp.isabs(name) or osp.splitdrive(name)[0]:
        return True
    base = osp.abspath(folder or 'folder')  # a stand-in name when only the name is checked
    return not osp.normpath(osp.join(base, name)).startswith(base + osp.sep)


def join_inside(folder: str, name: str, what: str = 'file') -> str:
    """``osp.join(folder, name)``, or ValueError naming ``name`` when it would leave ``folder``.

    ``what`` says what is written or read (e.g. 'overlay', 'result file') for the message."""
    if escapes(name, folder):
        raise ValueError(f'{what} name {name!r} resolves outside the folder {folder} '
                         f'(absolute or with ".."): refused, nothing is written outside it')
    return osp.join(folder, name)


def check_names_inside(folder: str, names: Iterable[str], what: str = 'file') -> None:
    """:func:`join_inside` for every name, before anything is written (ValueError on the first
    that would leave ``folder``)."""
    for name in names:
        join_inside(folder, name, what)


def user_path(path: str) -> str:
    """The absolute form of a path the user gave: relative paths are relative to the directory
    the command was started in (what a tool hands to a subprocess or writes into another
    folder then means what the user meant, wherever it runs)."""
    return osp.abspath(path)


def check_outputs_apart(outputs: Dict[str, Optional[str]], inputs: Dict[str, Optional[str]]) -> None:
    """ValueError when an output path (a folder written into, or a file) is, contains or is
    inside an input folder, naming both: results written there would replace or mix with the
    data they were made from. Links are resolved first; None entries are skipped.

    Args:
        outputs: {what: path}, e.g. {'--show-dir': 'work/show'}.
        inputs: {what: folder}, e.g. {"the dataset's image folder": 'data/images'}.
    """
    for out_what, out in outputs.items():
        for in_what, folder in inputs.items():
            if out is None or folder is None:
                continue
            a, b = osp.realpath(out), osp.realpath(folder)
            relation = ('is' if a == b else 'is inside' if a.startswith(b.rstrip(osp.sep) + osp.sep)
                        else 'contains' if b.startswith(a.rstrip(osp.sep) + osp.sep) else None)
            if relation:
                raise ValueError(f'{out_what} {out} {relation} {in_what} {folder}: refused before '
                                 f'any work (results there would replace or mix with the data); '
                                 f'choose an output folder outside the dataset')
