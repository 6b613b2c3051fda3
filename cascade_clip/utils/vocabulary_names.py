"""Comparing class names as the project does everywhere: up to case and white space."""
import re
from typing import Sequence


def normalise_name(name: str) -> str:
    """Case-folded, whitespace-collapsed form under which two class names are the same."""
    return re.sub(r'\s+', ' ', str(name)).strip().casefold()


def same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two class lists name the same classes in the same order."""
    return len(a) == len(b) and all(normalise_name(x) == normalise_name(y) for x, y in zip(a, b))
