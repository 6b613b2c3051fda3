from types import SimpleNamespace

import pytest
import torch
from mmcv.runner import HOOKS, Fp16OptimizerHook, LogBuffer

from cascade_clip.core import LossScaleOptimizerHook, TrainIterEvalHook


class Buffer:

    def __init__(self):
        self.output = {}

    def update(self, d, n):
        self.output.update(d)


def runner_for(model, loss, meta=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return SimpleNamespace(model=model, optimizer=opt, outputs=dict(loss=loss, num_samples=1),
                           log_buffer=Buffer(), meta=meta if meta is not None else {}, iter=0,
                           max_iters=10, logger=None)


def test_loss_scale_hook_steps_and_skips_non_finite():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    w0 = model.weight.detach().clone()
    hook = LossScaleOptimizerHook(grad_clip=dict(max_norm=1.0), loss_scale=dict(init_scale=1024.))
    assert isinstance(hook, Fp16OptimizerHook)  # MMCV's family
    assert HOOKS.get('LossScaleOptimizerHook') is LossScaleOptimizerHook
    x = torch.randn(3, 4)
    runner = runner_for(model, model(x).pow(2).mean())
    hook.before_run(runner)
    hook.after_train_iter(runner)
    assert not torch.equal(model.weight, w0)
    # the gradients were unscaled before clipping and stepping: the clipped step is that of
    # plain SGD with the same clipping
    ref = torch.nn.Linear(4, 2)
    ref.weight.data.copy_(w0)
    torch.manual_seed(0)
    ref.bias.data.copy_(torch.nn.Linear(4, 2).bias)
    ref(x).pow(2).mean().backward()
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    assert runner.log_buffer.output['grad_norm'] == pytest.approx(float(norm), rel=1e-5)
    torch.optim.SGD(ref.parameters(), lr=0.1).step()
    torch.testing.assert_close(model.weight, ref.weight)
    assert all(p.grad is None for p in model.parameters())  # zeroed after the step
    # MMCV's place for the scaler state, kept in checkpoints and restored by resume
    assert runner.meta['fp16']['loss_scaler']['scale'] == 1024.
    # a non-finite loss: no step, the scale is halved
    w1 = model.weight.detach().clone()
    runner.outputs['loss'] = (model(torch.randn(3, 4)).sum() * float('inf'))
    hook.after_train_iter(runner)
    assert torch.equal(model.weight, w1)
    assert runner.meta['fp16']['loss_scaler']['scale'] == 512.
    # a new hook restores the scaler from the (resumed) meta
    hook2 = LossScaleOptimizerHook()
    hook2.before_run(runner)
    assert hook2.loss_scaler.get_scale() == 512.
    # ... also from the key earlier versions of this project wrote
    hook3 = LossScaleOptimizerHook()
    hook3.before_run(runner_for(model, None, meta=dict(hook_msgs=dict(grad_scaler=dict(
        scale=64., growth_factor=2., backoff_factor=.5, growth_interval=2000, _growth_tracker=0)))))
    assert hook3.loss_scaler.get_scale() == 64.


def test_loss_scale_device_is_taken_from_the_model_and_static_scale_stays():
    """The scaler is built for the parameters' device at the start of the run (MMCV's CUDA
    scaler on a CPU model would disable itself: no loss scaling at all)."""
    model = torch.nn.Linear(4, 2)
    hook = LossScaleOptimizerHook(loss_scale=8.)
    runner = runner_for(model, model(torch.randn(3, 4)).sum())
    hook.before_run(runner)
    assert hook.loss_scaler.is_enabled()
    assert float(hook.loss_scaler.scale(torch.ones(()))) == 8.
    runner.outputs['loss'] = model(torch.randn(3, 4)).sum() * float('inf')
    hook.after_train_iter(runner)
    assert hook.loss_scaler.get_scale() == 8.  # static: not halved
    with pytest.raises(ValueError, match='loss_scale must be "dynamic", a number or a dict'):
        LossScaleOptimizerHook(loss_scale='fast')
    with pytest.raises(TypeError, match=r"unknown argument 'grad_clips' \(did you mean 'grad_clip'\?\)"):
        LossScaleOptimizerHook(grad_clips=None)


def test_train_state_is_recorded_before_the_iteration_hooks(tmp_path):
    """A checkpoint stores the random states as the iteration's backward passes left them,
    whatever the hooks of the iteration's end draw afterwards."""
    import logging

    from mmcv.runner import Hook

    from cascade_clip.core import AtomicIterBasedRunner
    from cascade_clip.models.losses import LossSum

    class Net(torch.nn.Linear):

        def train_step(self, batch, optimizer):
            loss = self(torch.ones(1, 2)).sum()
            self.states = torch.get_rng_state()
            return dict(loss=loss, loss_sums={'loss_x': LossSum(loss, 1, 'x')}, log_vars={},
                        num_samples=1)

    class Draw(Hook):

        def after_train_iter(self, runner):
            torch.rand(3)

    model = Net(2, 1)
    runner = AtomicIterBasedRunner(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                   work_dir=str(tmp_path), logger=logging.getLogger('t'), max_iters=1)
    runner.register_training_hooks(None, dict(grad_clip=None), dict(interval=1, by_epoch=False), None)
    runner.register_hook(Draw(), priority='HIGHEST')
    runner.run([torch.utils.data.DataLoader([0])], [('train', 1)])
    ckpt = torch.load(tmp_path / 'iter_1.pth', weights_only=True)
    assert torch.equal(ckpt['meta']['train_state']['ranks'][0]['random']['torch'], model.states)
    assert ckpt['meta']['iter'] == 1


class _Scored(torch.utils.data.Dataset):

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return i

    def evaluate(self, results, logger=None, **kwargs):
        return {'mIoU': 0.5}


# runner.iter during after_train_iter of iteration 10, and in after_train_epoch of an epoch ending there
@pytest.mark.parametrize('by_epoch,runner_iter', [(False, 9), (True, 10)])
def test_evaluation_is_logged_at_the_training_iteration(by_epoch, runner_iter):
    """An evaluation after training iteration 10 is logged at 10, not at MMSeg's count of
    validation batches (3)."""
    hook = TrainIterEvalHook(torch.utils.data.DataLoader(_Scored()), by_epoch=by_epoch)
    runner = SimpleNamespace(iter=runner_iter, log_buffer=LogBuffer(), logger=None)
    runner.log_buffer.output['eval_iter_num'] = 3  # as MMSeg's _do_evaluate sets it
    hook.evaluate(runner, [None] * 3)
    assert runner.log_buffer.output['eval_iter_num'] == 10
    assert runner.log_buffer.output['mIoU'] == 0.5 and runner.log_buffer.ready
