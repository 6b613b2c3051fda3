from types import SimpleNamespace

import torch

from cascade_clip.core import GradAllReduceOptimizerHook, GradScalerOptimizerHook


class Buffer:

    def __init__(self):
        self.output = {}

    def update(self, d, n):
        self.output.update(d)


def runner_for(model, loss, meta=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return SimpleNamespace(model=model, optimizer=opt, outputs=dict(loss=loss, num_samples=1),
                           log_buffer=Buffer(), meta=meta if meta is not None else {})


def test_grad_scaler_hook_steps_and_skips_non_finite():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    w0 = model.weight.detach().clone()
    hook = GradScalerOptimizerHook(grad_clip=dict(max_norm=1.0), device='cpu', init_scale=1024.)
    with torch.autocast('cpu', dtype=torch.float16):
        out = model(torch.randn(3, 4))
    runner = runner_for(model, out.float().pow(2).mean())
    hook.before_run(runner)
    hook.after_train_iter(runner)
    assert not torch.equal(model.weight, w0)
    assert 'grad_norm' in runner.log_buffer.output
    # the gradients were unscaled before clipping and stepping
    assert runner.log_buffer.output['grad_norm'] < 100
    state = runner.meta['hook_msgs']['grad_scaler']
    assert state['scale'] == 1024.
    # a non-finite loss: no step, the scale is halved
    w1 = model.weight.detach().clone()
    runner.outputs['loss'] = (model(torch.randn(3, 4)).sum() * float('inf'))
    hook.after_train_iter(runner)
    assert torch.equal(model.weight, w1)
    assert runner.meta['hook_msgs']['grad_scaler']['scale'] == 512.
    # a new hook restores the scaler from the checkpoint meta
    hook2 = GradScalerOptimizerHook(device='cpu')
    hook2.before_run(runner)
    assert hook2.scaler.get_scale() == 512.


def test_grad_scaler_device_is_taken_from_the_model():
    """No device given: the scaler is built for the parameters' device at the start of the run
    (a CUDA scaler on a CPU model would disable itself: no loss scaling at all)."""
    model = torch.nn.Linear(4, 2)
    hook = GradScalerOptimizerHook(init_scale=8.)
    runner = runner_for(model, model(torch.randn(3, 4)).sum())
    hook.before_run(runner)
    assert hook.scaler.is_enabled()
    assert float(hook.scaler.scale(torch.ones(()))) == 8.


def test_grad_allreduce_hook_single_process_is_plain_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    ref = torch.nn.Linear(4, 2)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(3, 4)
    runner = runner_for(model, model(x).sum())
    GradAllReduceOptimizerHook().after_train_iter(runner)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref(x).sum().backward()
    opt.step()
    torch.testing.assert_close(model.weight, ref.weight)
