"""Optimizer hooks: gradient all-reduce for distributed training without
DistributedDataParallel (CPU/Gloo), fp16 loss scaling, and exact gradient accumulation over
micro-batches."""
from typing import Optional

import torch
import torch.distributed as dist
from mmcv.parallel import is_module_wrapper
from mmcv.runner import HOOKS, OptimizerHook, allreduce_grads

from ..utils.strict import strict_kwargs


class MicroBatching:
    """What ``MicroBatchOptimizerHook`` tells the segmentor: split each loaded batch into
    ``micro_batches`` parts and back-propagate all but the last with ``backward``."""

    def __init__(self, micro_batches: int, backward):
        self.micro_batches = micro_batches
        self.backward = backward


@HOOKS.register_module()
@strict_kwargs
class MicroBatchOptimizerHook(OptimizerHook):
    """One optimizer step per runner iteration, over ``micro_batches`` forward/backward passes.

    This is what ``optimizer_config=dict(type='GradientCumulativeOptimizerHook',
    cumulative_iters=K)`` becomes in ``train_segmentor``: the data loader yields K ×
    ``samples_per_gpu`` images per iteration, the segmentor's ``train_step`` splits them into
    K micro-batches of ``samples_per_gpu``, normalises every micro-batch's loss by the number
    of masks of the whole loaded batch (averaged over the ranks, as without accumulation) and
    back-propagates the first K - 1 itself (with ``backward``, so the loss scaling applies);
    the hook back-propagates the last one, averages the gradients over the ranks when
    ``allreduce`` (replicated CPU runs; DDP synchronises at that last backward), unscales,
    clips and steps. The gradient is that of the K-times larger batch, and a runner iteration
    is an optimizer step, so ``max_iters``, warm-up and the poly schedule count optimizer steps.

    Args:
        grad_clip: as ``OptimizerHook``.
        micro_batches: K (1: plain step).
        allreduce: average the gradients over the ranks before the step (no DDP).
        fp16: loss scaling with ``torch.amp.GradScaler`` (its state kept in checkpoints' meta).
        init_scale: of the scaler.
        device: of the scaler; None: the device of the model's parameters (at the start of
            the run).
    """

    def __init__(self, grad_clip=None, micro_batches: int = 1, allreduce: bool = False,
                 fp16: bool = False, init_scale: float = 2.**16, device: Optional[str] = None):
        super().__init__(grad_clip=grad_clip)
        if int(micro_batches) < 1:
            raise ValueError(f'micro_batches must be >= 1, got {micro_batches}')
        self.micro_batches = int(micro_batches)
        self.allreduce = allreduce
        self.fp16, self.init_scale, self.device = fp16, init_scale, device
        self.scaler: Optional[torch.amp.GradScaler] = None  # built in before_run

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def before_run(self, runner):
        if self.fp16:
            # a scaler for another device type than the model's disables itself with a
            # warning (no loss scaling at all): take the device from the parameters
            device = self.device or next(runner.model.parameters()).device.type
            self.scaler = torch.amp.GradScaler(device, init_scale=self.init_scale)
            # kept under meta['hook_msgs'], the part of meta that MMCV's resume restores
            state = ((runner.meta or {}).get('hook_msgs') or {}).get('grad_scaler')
            if state:
                self.scaler.load_state_dict(state)
        if self.micro_batches > 1:
            model = runner.model.module if is_module_wrapper(runner.model) else runner.model
            if not hasattr(model, 'set_micro_batching'):
                raise TypeError(f'{type(model).__name__} does not support micro-batches '
                                f'(gradient accumulation); use CascadeCLIP')
            model.set_micro_batching(MicroBatching(self.micro_batches, self.backward))
        runner.optimizer.zero_grad()

    def after_run(self, runner):
        model = runner.model.module if is_module_wrapper(runner.model) else runner.model
        if self.micro_batches > 1 and hasattr(model, 'set_micro_batching'):
            model.set_micro_batching(None)

    def before_train_iter(self, runner):
        runner.optimizer.zero_grad()  # the micro-batches' backward passes accumulate from here

    def after_train_iter(self, runner):
        self.backward(runner.outputs['loss'])
        if self.allreduce:
            allreduce_gradients(runner.model.parameters())
        if self.scaler is not None:
            self.scaler.unscale_(runner.optimizer)
        clip_and_log(self, runner)
        if self.scaler is not None:
            self.scaler.step(runner.optimizer)
            self.scaler.update()
            if runner.meta is not None:
                runner.meta.setdefault('hook_msgs', {})['grad_scaler'] = self.scaler.state_dict()
        else:
            runner.optimizer.step()
        runner.optimizer.zero_grad()


@HOOKS.register_module()
@strict_kwargs
class GradAllReduceOptimizerHook(MicroBatchOptimizerHook):
    """Backward, average the gradients over the ranks, (clip), step.

    Used for CPU runs with several processes: the model is replicated in each process and
    gradients are averaged with one coalesced all-reduce per step (Gloo). Trainable
    parameters without a gradient on this rank count as zero so that every rank reduces the
    same tensors.
    """

    def __init__(self, grad_clip=None, micro_batches: int = 1):
        super().__init__(grad_clip=grad_clip, micro_batches=micro_batches, allreduce=True)


@HOOKS.register_module()
@strict_kwargs
class GradScalerOptimizerHook(MicroBatchOptimizerHook):
    """fp16 training: loss scaling with ``torch.amp.GradScaler`` (the model autocasts itself,
    see ``CascadeCLIP.amp_dtype``), optional gradient all-reduce for replicated CPU runs,
    clipping on the unscaled gradients. The scaler's state goes into checkpoints' meta."""

    def __init__(self, grad_clip=None, allreduce: bool = False, init_scale: float = 2.**16,
                 device: Optional[str] = None, micro_batches: int = 1):
        super().__init__(grad_clip=grad_clip, micro_batches=micro_batches, allreduce=allreduce,
                         fp16=True, init_scale=init_scale, device=device)


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
