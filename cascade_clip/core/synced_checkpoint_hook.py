"""Checkpoints of distributed training that every process waits for."""
import torch.distributed as dist
from mmcv.runner import HOOKS, CheckpointHook


@HOOKS.register_module()
class SyncedCheckpointHook(CheckpointHook):
    """MMCV's ``CheckpointHook`` whose processes wait, after each save, until rank 0 has
    written the file.

    Only rank 0 writes. With MMCV's hook the other processes go straight on to the next
    iteration; if one of them then fails (out of memory, a bad sample, a killed node),
    torchrun stops rank 0, possibly in the middle of the write, and the checkpoint of the
    iteration every process had completed is lost. With a barrier after the save, a failure
    in the next iteration can no longer cost that checkpoint. The wait costs nothing in
    steady state: the next iteration's gradient all-reduce waits for rank 0 anyway.
    """

    def _save_checkpoint(self, runner):
        super()._save_checkpoint(runner)  # rank 0 only (MMCV's @master_only)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
