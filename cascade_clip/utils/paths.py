"""Paths: names that must stay inside a folder, the user's paths, outputs apart from inputs."""
# A name read from a file (a split entry) joined with osp.join could be absolute or climb out with
# "..": refused. The check is lexical: the user's own symbolic links are followed as usual.
import os.path as osp
from typing import Dict, Iterable, Optional


def escapes(name: str, folder: str = '') -> bool:
    """True when ``osp.join(folder, name)`` would not be inside ``folder`` (absolute, a drive, or
    out with ``..`` once normalised)."""
    name = str(name)
    if osp.isabs(name) or osp.splitdrive(name)[0]:
        return True
    base = osp.abspath(folder or 'folder')  # a stand-in name when only the name is checked
    return not osp.normpath(osp.join(base, name)).startswith(base + osp.sep)


def join_inside(folder: str, name: str, what: str = 'file') -> str:
    """``osp.join(folder, name)``, or ValueError naming ``name`` (a ``what``) when it would leave
    ``folder``."""
    if escapes(name, folder):
        raise ValueError(f'{what} name {name!r} resolves outside the folder {folder} '
                         f'(absolute or with ".."): refused, nothing is written outside it')
    return osp.join(folder, name)


def check_names_inside(folder: str, names: Iterable[str], what: str = 'file') -> None:
    """:func:`join_inside` for every name, before anything is written."""
    for name in names:
        join_inside(folder, name, what)


def user_path(path: str) -> str:
    """The absolute form of a path the user gave (relative to where the command started)."""
    return osp.abspath(path)


def check_outputs_apart(outputs: Dict[str, Optional[str]], inputs: Dict[str, Optional[str]]) -> None:
    """ValueError naming both when an output path is, contains or is inside an input folder
    (links resolved; None skipped).

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
