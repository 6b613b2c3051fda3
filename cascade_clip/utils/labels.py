"""The one check of label values, for label files and label tensors alike."""
from typing import Union

import numpy as np
import torch


def check_label_values(labels: Union[np.ndarray, torch.Tensor], num_classes: int,
                       ignore_index: int, name: str) -> None:
    """ValueError naming ``name`` when ``labels`` hold values that are neither class ids
    0..num_classes-1 nor ``ignore_index``."""
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        values = labels[bad]
        values = values.unique() if isinstance(values, torch.Tensor) else np.unique(values)
        raise ValueError(f'label map {name} holds values {values.tolist()[:10]} that are not '
                         f'class ids 0..{num_classes - 1} nor the ignore index {ignore_index}')
