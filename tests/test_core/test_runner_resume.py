"""AtomicIterBasedRunner in-process: a resumed run continues exactly (dropout, shuffling,
numpy/python augmentations), and the checkpoint's hook messages come back."""
import logging
import os.path as osp
import random

import numpy as np
import torch
import torch.nn as nn
from mmcv.runner import build_runner
from torch.utils.data import DataLoader, Dataset

import cascade_clip  # noqa: F401  (registers the runner)
from cascade_clip.models.losses import LossSum


class Noisy(Dataset):

    def __len__(self):
        return 12

    def __getitem__(self, i):
        # augmentations draw from numpy and python's global generators
        return torch.full((4, ), float(i)) * float(np.random.rand()) + random.random()


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.5)  # draws from the torch generator

    def train_step(self, batch, optimizer, **kwargs):
        squares = self.fc(self.drop(batch)).pow(2).sum()  # a mean over the batch's samples
        return dict(loss_sums={'loss': LossSum(squares, len(batch), 'samples')}, log_vars={},
                    num_samples=len(batch))


def make_runner(work_dir, seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = Net()
    runner = build_runner(
        dict(type='AtomicIterBasedRunner', max_iters=5),
        default_args=dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                          work_dir=work_dir, logger=logging.getLogger('test_runner_resume'), meta={}))
    runner.register_training_hooks(None, dict(grad_clip=None), dict(interval=2), None)
    loader = DataLoader(Noisy(), batch_size=4, shuffle=True, drop_last=True)  # 3 batches an epoch
    return runner, loader


def test_resumed_runner_continues_exactly(tmp_path):
    straight_dir, resumed_dir = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    runner, loader = make_runner(straight_dir, seed=0)
    runner.run([loader], [('train', 1)])
    expected = {k: v.clone() for k, v in runner.model.state_dict().items()}

    # 3 batches an epoch: from iter_2 the resumed run crosses into epoch 1 (iteration 4); from
    # iter_4 it replays the first batch of epoch 1
    for ckpt in ('iter_2.pth', 'iter_4.pth'):
        resumed, loader = make_runner(resumed_dir, seed=123)  # another process: other states
        resumed.resume(osp.join(straight_dir, ckpt), map_location='cpu')
        assert resumed.iter == int(ckpt[5])
        # the CheckpointHook records the previous save in meta['hook_msgs'] (MMCV's
        # IterBasedRunner.resume drops it; the loss-scaler state lives there too)
        previous = osp.join(straight_dir, 'iter_2.pth') if ckpt == 'iter_4.pth' else None
        assert resumed.meta['hook_msgs'].get('last_ckpt') == previous
        resumed.run([loader], [('train', 1)])
        for k, v in resumed.model.state_dict().items():
            assert torch.equal(v, expected[k]), (ckpt, k)

    # without the train state (as MMCV's runner saves), the same resume ends elsewhere
    resumed, loader = make_runner(resumed_dir, seed=123)
    resumed.resume(osp.join(straight_dir, 'iter_2.pth'), map_location='cpu')
    resumed._resume_state = None
    resumed.run([loader], [('train', 1)])
    assert not torch.equal(resumed.model.fc.weight, expected['fc.weight'])
