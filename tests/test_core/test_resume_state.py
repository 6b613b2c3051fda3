"""Random states and data-loader positions: saved, restored, continued exactly."""
import io
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cascade_clip.core import (ResumableLoader, get_random_states, remove_stale_temporary_checkpoints,
                               set_random_states)


def draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(()))), float(np.random.randn())


def test_random_states_round_trip_and_load_weights_only():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    states = get_random_states()
    expected = [draws() for _ in range(3)]
    buf = io.BytesIO()
    torch.save(states, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)  # no allow-list needed
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_random_states(loaded)
    assert [draws() for _ in range(3)] == expected


class Augmented(Dataset):
    """Sample i -> (i, a numpy draw, a python draw): augmentations draw from the global streams."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.tensor([float(i), float(np.random.rand()), random.random()])


class Stepper:
    """What MMCV's IterLoader does (without its 2 s pause): a new epoch when one ends."""

    def __init__(self, loader):
        self.loader = loader
        self.it = iter(loader)

    def take(self, n):
        out = []
        for _ in range(n):
            try:
                out.append(next(self.it))
            except StopIteration:
                self.it = iter(self.loader)
                out.append(next(self.it))
            torch.rand(3)  # the model's dropout draws from the torch stream between batches
        return out


@pytest.mark.parametrize('consumed', [2, 3, 5])
def test_resumable_loader_continues_exactly(consumed):
    """Straight: 8 batches of 3 (3 per epoch, shuffled). Resumed after ``consumed`` batches:
    a new loader replays the saved epoch and yields the same remaining batches."""
    def make():
        return ResumableLoader(DataLoader(Augmented(), batch_size=3, shuffle=True, drop_last=True))

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    straight = make()
    stepper = Stepper(straight)
    first = stepper.take(consumed)
    state, rng = straight.state_dict(), get_random_states()
    expected = stepper.take(8 - consumed)

    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)  # a fresh process: other states
    resumed = make()
    resumed.resume_from(state, rng)
    got = Stepper(resumed).take(8 - consumed)
    assert len(first) == consumed
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
    # the first epoch's order was not the identity (the test would be vacuous otherwise)
    assert not torch.equal(first[0][:, 0], torch.tensor([0., 1., 2.]))


def test_resumable_loader_hides_set_epoch_and_sets_it_itself():
    class Sampler(torch.utils.data.Sampler):

        def __init__(self):
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

        def __iter__(self):
            return iter(range(4))

        def __len__(self):
            return 4

    sampler = Sampler()
    loader = ResumableLoader(DataLoader(list(range(4)), batch_size=2, sampler=sampler))
    assert not hasattr(loader.sampler, 'set_epoch') and len(loader) == 2
    for _ in range(3):
        list(iter(loader))
    assert sampler.epochs == [0, 1, 2]
    loader2 = ResumableLoader(DataLoader(list(range(4)), batch_size=2, sampler=sampler))
    loader2.resume_from(dict(loader.state_dict(), consumed=1))
    assert len(list(iter(loader2))) == 1 and sampler.epochs[-1] == 2


def test_remove_stale_temporary_checkpoints(tmp_path):
    pid_max = int(open('/proc/sys/kernel/pid_max').read())
    dead = tmp_path / f'.iter_8.tmp-{pid_max + 1}.pth'  # no process has a pid above pid_max
    mine = tmp_path / f'.iter_9.tmp-{os.getpid()}.pth'  # this process saves nothing now
    alive = tmp_path / '.iter_7.tmp-1.pth'  # pid 1 always runs
    others = [tmp_path / 'iter_8.pth', tmp_path / '.notes.tmp-123.json', tmp_path / '.x.tmp-abc.pth']
    for p in [dead, mine, alive, *others]:
        p.write_bytes(b'x')
    removed = remove_stale_temporary_checkpoints(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(mine)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [alive, *others])
    assert remove_stale_temporary_checkpoints(str(tmp_path / 'missing')) == []
