"""Comparing class names as the project does everywhere: up to case and white space."""
import csv
import re
from typing import List, Sequence


def normalise_name(name: str) -> str:
    """Case-folded, whitespace-collapsed form under which two class names are the same."""
    return re.sub(r'\s+', ' ', str(name)).strip().casefold()


def same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two class lists name the same classes in the same order."""
    return len(a) == len(b) and all(normalise_name(x) == normalise_name(y) for x, y in zip(a, b))


def parse_class_list(text: str) -> List[str]:
    """Class names from comma-separated text, read as CSV: a name holding a comma is quoted
    (``"ice cream, vanilla",dog`` gives 2 names). Lines are rows, so a file may also list
    one name per line. Names are stripped; empty entries (a trailing comma, a blank line) are
    dropped."""
    rows = csv.reader(text.splitlines(), skipinitialspace=True)
    return [n.strip() for row in rows for n in row if n.strip()]
