"""Class names as the project reads and compares them: one class-list parser, and equality up
to case and white space."""
import csv
import io
import re
from typing import List, Optional, Sequence


def normalise_name(name: str) -> str:
    """Case-folded, whitespace-collapsed form under which two class names are the same."""
    return re.sub(r'\s+', ' ', str(name)).strip().casefold()


def same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two class lists name the same classes in the same order."""
    return len(a) == len(b) and all(normalise_name(x) == normalise_name(y) for x, y in zip(a, b))


def parse_class_list(text: Optional[str]) -> List[str]:
    """Class names from comma- and/or line-separated text, read as CSV: a name holding a comma
    is quoted (``"ice cream, vanilla",dog`` gives 2 names). Names are stripped; blank lines are
    skipped.

    Raises ValueError for an unclosed quote or text after a closing quote (``"a, b" ,c``), an
    empty list, or an empty field (``,,`` or a trailing comma), naming its position among the
    names.
    """
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
