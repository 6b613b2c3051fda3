"""Gradient all-reduce for distributed training without DistributedDataParallel (CPU/Gloo)."""
import torch
import torch.distributed as dist
from mmcv.runner import HOOKS, OptimizerHook


@HOOKS.register_module()
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
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            params = [p for p in runner.model.parameters() if p.requires_grad]
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        if self.grad_clip is not None:
            grad_norm = self.clip_grads(runner.model.parameters())
            if grad_norm is not None:
                runner.log_buffer.update({'grad_norm': float(grad_norm)}, runner.outputs['num_samples'])
        runner.optimizer.step()
