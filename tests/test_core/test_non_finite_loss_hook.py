import logging
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch

from cascade_clip.core import NonFiniteLossHook


def fake_runner(log_vars, loss, it=6):
    return SimpleNamespace(iter=it, logger=logging.getLogger('test_non_finite'),
                           outputs=dict(loss=torch.tensor(loss), log_vars=OrderedDict(log_vars)))


def test_finite_losses_pass():
    runner = fake_runner([('decode.loss_mask', 1.5), ('decode.loss_dice', 0.5), ('loss', 2.0)], 2.0)
    NonFiniteLossHook().after_train_iter(runner)


def test_names_the_first_non_finite_term_and_the_iteration():
    runner = fake_runner([('decode.loss_mask', 1.5), ('decode.loss_dice', float('nan')),
                          ('decode.acc_seg', 50.0), ('loss', float('nan'))], float('nan'))
    with pytest.raises(FloatingPointError, match=r'^decode\.loss_dice is nan at iteration 7 '
                       r'\(decode\.loss_mask=1\.5, decode\.loss_dice=nan, loss=nan\)'):
        NonFiniteLossHook().after_train_iter(runner)
    runner = fake_runner([('decode.loss_mask', float('inf')), ('loss', float('inf'))], float('inf'), it=0)
    with pytest.raises(FloatingPointError, match=r'^decode\.loss_mask is inf at iteration 1 '):
        NonFiniteLossHook().after_train_iter(runner)


def test_non_loss_entries_are_not_checked_and_the_local_loss_is():
    # a NaN accuracy (no labelled pixel) is not a reason to stop
    NonFiniteLossHook().after_train_iter(fake_runner([('decode.acc_seg', float('nan')), ('loss', 1.0)], 1.0))
    # without log vars, the loss tensor itself is checked
    runner = fake_runner([], float('nan'), it=2)
    with pytest.raises(FloatingPointError, match=r'^loss is nan at iteration 3'):
        NonFiniteLossHook().after_train_iter(runner)


def test_registered():
    from mmcv.runner import HOOKS
    assert HOOKS.get('NonFiniteLossHook') is NonFiniteLossHook
