"""Distributed set-up for CUDA (NCCL) and CPU (Gloo) runs."""
import torch
import torch.distributed as dist
from mmcv.runner import get_dist_info, init_dist


def init_distributed(launcher: str, backend: str = 'nccl') -> bool:
    """Initialise torch.distributed for ``launcher`` ('none', 'pytorch', 'slurm', 'mpi').

    On a machine with GPUs this is MMCV's ``init_dist`` (one GPU per process). Without GPUs,
    MMCV's version would divide the rank by a GPU count of 0, so the process group is created
    here with the Gloo backend from torchrun's environment (several nodes work the same way:
    MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE).

    Returns:
        whether the run is distributed.
    """
    if launcher == 'none':
        return False
    if torch.cuda.is_available():
        init_dist(launcher, backend=backend)
        return True
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} needs GPUs; on the CPU use --launcher pytorch '
                         f'(torchrun, as dist_train.sh does)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    return True


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers equal to rank 0's."""
    _, world = get_dist_info()
    if world > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)
