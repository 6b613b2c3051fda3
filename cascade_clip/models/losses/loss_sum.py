"""Loss terms as sums and counts, so that the training loop can average them exactly."""
from typing import Dict, NamedTuple

import torch
import torch.nn as nn


class LossSum(NamedTuple):
    """One loss term of a batch: ``value`` summed over the batch's units and their ``count``.

    The training loop (``AtomicIterBasedRunner``) divides ``value`` by the count summed over
    every micro-batch and process of the optimizer step, one count per ``unit``: a step
    accumulated from micro-batches then has exactly the gradient of the whole batch, whatever
    a term averages over ('masks', 'pixels', 'images', ...).
    """
    value: torch.Tensor  # () sum of the term over the units of this batch
    count: int  # units in this batch
    unit: str  # what is counted; terms of one unit share the count


class SumLoss(nn.Module):
    """Base of the losses the cascade head accepts in ``loss_decode`` (alone or in a list).

    ``forward(pred_masks, label, ignore_index)`` gets the head's (B, K, h, w) mask logits at
    the decoders' resolution and the (B, H, W) label map, and returns ``{name: LossSum}`` with
    names starting with ``loss_``.
    """

    def forward(self, pred_masks: torch.Tensor, label: torch.Tensor,
                ignore_index: int = 255) -> Dict[str, LossSum]:
        raise NotImplementedError
