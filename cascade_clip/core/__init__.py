from .collect import collect_results
from .dist_eval_hook import GatherDistEvalHook, TrainIterEvalHook
from .loss_scale_hook import LossScaleOptimizerHook
from .non_finite_loss_hook import NonFiniteLossHook
from .random_state import get_random_states, set_random_states
from .resumable_loader import ResumableLoader
from .runner import (RUN_META_KEY, AtomicIterBasedRunner, atomic_save_checkpoint,
                     find_resume_checkpoint, micro_batch_bounds, remove_stale_temporary_checkpoints)
from .synced_checkpoint_hook import SyncedCheckpointHook

__all__ = [
    'AtomicIterBasedRunner', 'GatherDistEvalHook', 'LossScaleOptimizerHook', 'NonFiniteLossHook',
    'ResumableLoader', 'SyncedCheckpointHook', 'TrainIterEvalHook', 'RUN_META_KEY', 'atomic_save_checkpoint',
    'collect_results', 'find_resume_checkpoint', 'get_random_states', 'micro_batch_bounds',
    'remove_stale_temporary_checkpoints', 'set_random_states'
]
