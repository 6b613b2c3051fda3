from .collect import collect_results
from .dist_eval_hook import GatherDistEvalHook
from .hooks import LossScaleOptimizerHook, TrainStateHook
from .non_finite_loss_hook import NonFiniteLossHook
from .random_state import get_random_states, set_random_states
from .resumable_loader import ResumableLoader
from .runner import (AtomicIterBasedRunner, atomic_save_checkpoint, micro_batch_bounds,
                     remove_stale_temporary_checkpoints)
from .synced_checkpoint_hook import SyncedCheckpointHook

__all__ = [
    'AtomicIterBasedRunner', 'GatherDistEvalHook', 'LossScaleOptimizerHook', 'NonFiniteLossHook',
    'ResumableLoader', 'SyncedCheckpointHook', 'TrainStateHook', 'atomic_save_checkpoint',
    'collect_results', 'get_random_states', 'micro_batch_bounds',
    'remove_stale_temporary_checkpoints', 'set_random_states'
]
