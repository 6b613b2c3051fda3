"""Names that must stay inside a folder: split entries, overlay and result file names.

A name read from a user's or a downloaded file (a split entry, an image's relative file name)
is joined to a folder the user chose. ``osp.join`` lets an absolute name replace the folder
and ``..`` climb out of it, so such a name could read or overwrite files anywhere; these
helpers refuse it. The check is on the name itself (lexical): symbolic links the user made
inside their own folders are theirs and are followed as usual.
"""
import os.path as osp
from typing import Iterable


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
