"""Class names as the project reads and compares them: one class-list parser, and equality up
to case and white space."""
import csv
import io
import re
from typing import List, Optional, Sequence

from .files import read_text


def normalise_name(name: str) -> str:
    """Case-folded, whitespace-collapsed form under which two class names are the same."""
    return re.sub(r'\s+', ' ', str(name)).strip().casefold()


def same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two class lists name the same classes in the same order."""
    return len(a) == len(b) and all(normalise_name(x) == normalise_name(y) for x, y in zip(a, b))


def class_ids(classes: Sequence[str], names: Sequence[str]) -> List[int]:
    """The positions in ``classes`` of ``names`` (up to case and space); refuses unknown names."""
    index = {normalise_name(c): i for i, c in enumerate(classes)}
    missing = [n for n in names if normalise_name(n) not in index]
    if missing:
        shown = ', '.join(classes[:12]) + (', ...' if len(classes) > 12 else '')
        raise ValueError(f'{", ".join(map(repr, missing))}: not among the {len(classes)} classes '
                         f'({shown})')
    return [index[normalise_name(n)] for n in names]


def parse_class_list(text: Optional[str]) -> List[str]:
    """Stripped class names from comma- and/or line-separated text, read as CSV (``"a, b",c``:
    2 names); refuses bad quoting, an empty list or an empty name."""
    rows = []
    try:
        for row in csv.reader(io.StringIO(text or ''), skipinitialspace=True, strict=True):
            rows.append(row)
    except csv.Error as e:
        raise ValueError(f'the class names could not be read as comma-separated values ({e}); '
                         f'close every opening double quote, and put the comma right after the '
                         f'closing one') from None
    names = [n for row in rows if any(f.strip() for f in row) for n in row]
    if not names:
        raise ValueError('the class list is empty: type at least one class name, separated by '
                         'commas or one per line')
    empty = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise ValueError(f'class name(s) number {", ".join(map(str, empty))} of {len(names)} are '
                         f'empty (two commas in a row or a trailing comma?)')
    return [n.strip() for n in names]


def read_class_file(path: str) -> List[str]:
    """The class names in the text file ``path`` (:func:`parse_class_list`), errors naming it."""
    text = read_text(path, 'class file')
    try:
        return parse_class_list(text)
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None
