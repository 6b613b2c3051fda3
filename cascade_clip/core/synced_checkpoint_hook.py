"""Checkpoints of distributed training that every process waits for."""
import torch.distributed as dist
from mmcv.runner import HOOKS, CheckpointHook


@HOOKS.register_module()
class SyncedCheckpointHook(CheckpointHook):
    """MMCV's ``CheckpointHook`` whose processes wait, after each save, until rank 0 has
    written the file."""
    # otherwise a failure in another process's next iteration makes torchrun stop rank 0 in
    # the middle of the write; the next all-reduce waits for rank 0 anyway

    def _save_checkpoint(self, runner):
        super()._save_checkpoint(runner)  # rank 0 only (MMCV's @master_only)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
