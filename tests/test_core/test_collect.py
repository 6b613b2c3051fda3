"""Rank 0 gathers the processes' test results in dataset order, over the process group."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmseg.datasets.samplers import DistributedSampler

from cascade_clip.core import collect_results


def _worker(rank: int, world: int, port: int, size: int, out: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        # each rank's part, as its test loop makes it: one result per index of its sampler
        indices = list(DistributedSampler(list(range(size)), world, rank, shuffle=False))
        part = [dict(index=i, scores=torch.full((2, ), float(i))) for i in indices]
        results = collect_results(part, size)
        torch.save({'results': results}, f'{out}.{rank}')
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_give_dataset_order_without_padding(tmp_path):
    out = str(tmp_path / 'res')
    # 5 images over 2 processes: rank 0 gets 0, 2, 4 and rank 1 gets 1, 3 and a padding copy of 0
    mp.spawn(_worker, args=(2, _free_port(), 5, out), nprocs=2, join=True)
    got = torch.load(f'{out}.0', weights_only=True)['results']
    assert [r['index'] for r in got] == [0, 1, 2, 3, 4]
    assert all(torch.equal(r['scores'], torch.full((2, ), float(i))) for i, r in enumerate(got))
    assert torch.load(f'{out}.1', weights_only=True)['results'] is None


def test_single_process_keeps_the_order():
    assert collect_results([3, 1, 2], 2) == [3, 1]
