"""Gradient all-reduce for distributed training without DistributedDataParallel (CPU/Gloo)."""
import torch
import torch.distributed as dist
from mmcv.runner import HOOKS, OptimizerHook, allreduce_grads

from ..utils.strict import strict_kwargs


@HOOKS.register_module()
@strict_kwargs
class GradAllReduceOptimizerHook(OptimizerHook):
    """Backward, average the gradients over the ranks, (clip), step.

    Used for CPU runs with several processes: the model is replicated in each process and
    gradients are averaged with one coalesced all-reduce per step (Gloo). Trainable
    parameters without a gradient on this rank count as zero so that every rank reduces the
    same tensors.
    """

    def after_train_iter(self, runner):
        runner.optimizer.zero_grad()
        runner.outputs['loss'].backward()
        allreduce_gradients(runner.model.parameters())
        clip_and_log(self, runner)
        runner.optimizer.step()


def clip_and_log(hook: OptimizerHook, runner) -> None:
    """Clip the gradients if the hook has ``grad_clip`` and log their norm (as OptimizerHook)."""
    if hook.grad_clip is not None:
        grad_norm = hook.clip_grads(runner.model.parameters())
        if grad_norm is not None:
            runner.log_buffer.update({'grad_norm': float(grad_norm)}, runner.outputs['num_samples'])


def allreduce_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks (MMCV's coalesced ``allreduce_grads``).

    Trainable parameters without a gradient get zeros first, so that every rank reduces the
    same tensors (MMCV's helper skips missing gradients, which would desynchronise the ranks).
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    allreduce_grads(params, coalesce=True)


@HOOKS.register_module()
@strict_kwargs
class GradScalerOptimizerHook(OptimizerHook):
    """fp16 training: loss scaling with ``torch.amp.GradScaler`` (the model autocasts itself,
    see ``CascadeCLIP.amp_dtype``), optional gradient all-reduce for replicated CPU runs,
    clipping on the unscaled gradients. The scaler's state goes into checkpoints' meta."""

    def __init__(self, grad_clip=None, allreduce: bool = False, init_scale: float = 2.**16,
                 device: str = 'cuda'):
        super().__init__(grad_clip=grad_clip)
        self.allreduce = allreduce
        self.scaler = torch.amp.GradScaler(device, init_scale=init_scale)

    def before_run(self, runner):
        # kept under meta['hook_msgs'], the part of meta that MMCV's resume restores
        state = ((runner.meta or {}).get('hook_msgs') or {}).get('grad_scaler')
        if state:
            self.scaler.load_state_dict(state)

    def after_train_iter(self, runner):
        runner.optimizer.zero_grad()
        self.scaler.scale(runner.outputs['loss']).backward()
        if self.allreduce:
            allreduce_gradients(runner.model.parameters())
        self.scaler.unscale_(runner.optimizer)
        clip_and_log(self, runner)
        self.scaler.step(runner.optimizer)
        self.scaler.update()
        if runner.meta is not None:
            runner.meta.setdefault('hook_msgs', {})['grad_scaler'] = self.scaler.state_dict()
