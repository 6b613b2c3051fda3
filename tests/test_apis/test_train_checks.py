import pytest
from torch.utils.data import DataLoader, DistributedSampler

from cascade_clip.apis import train as train_api


def test_one_batch_check_single_process():
    ds = list(range(5))
    train_api.check_one_batch(ds, DataLoader(ds, batch_size=5, drop_last=True), 5, False)
    with pytest.raises(ValueError, match=r'\(list, 5 images\) is smaller than one batch: '
                       r'data.samples_per_gpu=6 x 1 process\(es\) = 6 images per step.*'
                       r'at most 5 \(e.g. --cfg-options data.samples_per_gpu=5\)'):
        train_api.check_one_batch(ds, DataLoader(ds, batch_size=6, drop_last=True), 6, False)


def test_one_batch_check_counts_the_processes(monkeypatch):
    ds = list(range(5))
    monkeypatch.setattr(train_api, 'get_dist_info', lambda: (0, 2))
    # 2 processes: each gets ceil(5 / 2) = 3 images, so at most 3 per process
    loader = DataLoader(ds, batch_size=4, drop_last=True,
                        sampler=DistributedSampler(ds, num_replicas=2, rank=0))
    with pytest.raises(ValueError, match=r'samples_per_gpu=4 x 2 process\(es\) = 8 images per step.*'
                       r'data.samples_per_gpu=3\)'):
        train_api.check_one_batch(ds, loader, 4, True)
    with pytest.raises(ValueError, match='add images to the training set'):
        train_api.check_one_batch([], DataLoader([], batch_size=1, drop_last=True), 1, False)


def test_one_batch_check_with_accumulation_names_the_micro_batches():
    ds = list(range(5))
    # samples_per_gpu=2 accumulated over 3 micro-batches: the loader yields 6 images per step;
    # the fix is samples_per_gpu <= 5 // 3 = 1 or fewer micro-batches, not samples_per_gpu=5
    loader = DataLoader(ds, batch_size=6, drop_last=True)
    with pytest.raises(ValueError, match=r'data.samples_per_gpu=2 x 3 micro-batches x 1 process\(es\) = '
                       r'6 images per step.*data.samples_per_gpu=1\), accumulate fewer micro-batches'):
        train_api.check_one_batch(ds, loader, 2, False, micro_batches=3)
