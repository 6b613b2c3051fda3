"""Class lists shipped as data files (``cascade_clip/datasets/names/``, with their sources)."""
import os.path as osp
from typing import List

FOLDER = osp.join(osp.dirname(osp.abspath(__file__)), 'names')


def read_names(file: str) -> List[str]:
    """The class lines of ``names/<file>``, in order (comment lines skipped)."""
    with open(osp.join(FOLDER, file), encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f if line.strip() and not line.startswith('#')]


# ADE20K-847: (name, full-ADE id) in train-id order
ADE847 = tuple((name, int(full_id)) for name, full_id in
               (line.split('\t') for line in read_names('ade847.tsv')))
PC459 = tuple(read_names('pc459.txt'))
