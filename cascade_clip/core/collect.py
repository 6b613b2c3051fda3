"""Collecting the test results of all processes on rank 0, without files.

MMCV's ``collect_results_cpu`` passes the parts through pickle files in a shared folder (a
fixed one by default, which a planted link can redirect, and which it deletes afterwards even
when the user named it). Here the parts travel over the process group itself
(``gather_object``; Gloo on the CPU, NCCL on GPUs once ``torch.cuda.set_device`` is done, as
``init_dist`` does): they are this run's own objects, and nothing is written to disk.
"""
from typing import List, Optional

import torch.distributed as dist
from mmcv.runner import get_dist_info


def collect_results(part: List, size: int) -> Optional[List]:
    """Every rank's ``part`` in dataset order on rank 0 (``None`` on the other ranks).

    The order is MMCV's: ``DistributedSampler`` without shuffling gives rank r the indices
    r, r + W, r + 2W, ... (padded to equal lengths), so the parts are interleaved and the
    padding cut off at ``size`` (the dataset's length).
    """
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
