"""Distributed set-up for CUDA (NCCL) and CPU (Gloo) runs, and the one distributed wrapper."""
import os
import signal
import threading

import torch
import torch.distributed as dist
from mmcv.parallel import MMDistributedDataParallel, scatter_kwargs
from mmcv.runner import init_dist


def init_distributed(launcher: str, backend: str = 'nccl') -> bool:
    """Initialise torch.distributed for ``launcher`` ('none', 'pytorch', 'slurm', 'mpi');
    whether the run is distributed. Without GPUs: Gloo from torchrun's environment."""
    if launcher == 'none':
        return False
    if torch.cuda.is_available():
        init_dist(launcher, backend=backend)
        return True
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} needs GPUs; on the CPU use --launcher pytorch '
                         f'(torchrun, as dist_train.sh does)')
    if not dist.is_initialized():  # MMCV's init_dist would divide the rank by 0 GPUs
        dist.init_process_group(backend='gloo')
    return True


def exit_on_sigterm() -> bool:
    """Make SIGTERM end this process through ``SystemExit(143)``, so ``finally`` blocks run
    (unless a handler is set or this is not the main thread); whether it was installed."""
    # torchrun, SLURM and timeout stop processes with SIGTERM: the default action would leave a
    # checkpoint being written behind as its temporary file
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    def _exit(signum, frame):
        # os.write, not logging: a handler may interrupt a logging call holding its lock
        os.write(2, f'process {os.getpid()}: SIGTERM received, stopping (the write in '
                    f'progress, if any, is abandoned)\n'.encode())
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, _exit)
    return True


class MMDDP(MMDistributedDataParallel):
    """MMCV's ``MMDistributedDataParallel`` for one GPU per process (``device_ids=[i]``) or a
    CPU process (``device_ids=None``, Gloo)."""
    # MMCV 1.7 passes CPU batches on still in DataContainers, and its _run_ddp_forward reads
    # _use_replicated_tensor_module, which recent torch no longer has

    def _cpu_inputs(self, inputs, kwargs):
        inputs, kwargs = scatter_kwargs(inputs, kwargs, [-1], dim=self.dim)
        return inputs[0], kwargs[0]

    def train_step(self, *inputs, **kwargs):
        if not self.device_ids:
            inputs, kwargs = self._cpu_inputs(inputs, kwargs)
        return super().train_step(*inputs, **kwargs)

    def val_step(self, *inputs, **kwargs):
        if not self.device_ids:
            inputs, kwargs = self._cpu_inputs(inputs, kwargs)
        return super().val_step(*inputs, **kwargs)

    def _run_ddp_forward(self, *inputs, **kwargs):
        if self.device_ids:
            inputs, kwargs = self.to_kwargs(inputs, kwargs, self.device_ids[0])
            inputs, kwargs = inputs[0], kwargs[0]
        else:
            inputs, kwargs = self._cpu_inputs(inputs, kwargs)
        return self.module(*inputs, **kwargs)
