"""Loss terms as sums and counts, so that the training loop can average them exactly."""
from typing import Dict, NamedTuple

import torch
import torch.nn as nn


class LossSum(NamedTuple):
    """One loss term of a batch: ``value`` summed over the batch's units and their ``count``,
    which the runner sums over the micro-batches and processes of a step to average exactly."""
    value: torch.Tensor  # () sum of the term over the units of this batch
    count: int  # units in this batch
    unit: str  # what is counted; terms of one unit share the count


class SumLoss(nn.Module):
    """Base of the losses of the cascade head's ``loss_decode``: (B, K, h, w) mask logits and a
    (B, H, W) label map -> ``{'loss_...': LossSum}``."""

    def forward(self, pred_masks: torch.Tensor, label: torch.Tensor,
                ignore_index: int = 255) -> Dict[str, LossSum]:
        raise NotImplementedError
