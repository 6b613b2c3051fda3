"""Collecting the test results of all processes on rank 0 over the process group, without files."""
# MMCV's collect_results_cpu goes through pickles in a shared folder that a link can redirect and
# that it deletes afterwards.
from typing import List, Optional

import torch.distributed as dist
from mmcv.runner import get_dist_info


def collect_results(part: List, size: int) -> Optional[List]:
    """Every rank's ``part`` in dataset order on rank 0 (``None`` on the other ranks)."""
    # DistributedSampler gives rank r the indices r, r + W, ... padded to equal lengths
    rank, world = get_dist_info()
    if world == 1:
        return list(part)[:size]
    parts = [None] * world if rank == 0 else None
    dist.gather_object(list(part), parts, dst=0)
    if rank != 0:
        return None
    ordered = []
    for res in zip(*parts):
        ordered.extend(res)
    return ordered[:size]
