from .hooks import (GradAllReduceOptimizerHook, GradScalerOptimizerHook, MicroBatching,
                    MicroBatchOptimizerHook, allreduce_gradients)
from .non_finite_loss_hook import NonFiniteLossHook
from .random_state import get_random_states, set_random_states
from .resumable_loader import ResumableLoader
from .runner import AtomicIterBasedRunner, atomic_save_checkpoint, remove_stale_temporary_checkpoints

__all__ = [
    'AtomicIterBasedRunner', 'GradAllReduceOptimizerHook', 'GradScalerOptimizerHook',
    'MicroBatchOptimizerHook', 'MicroBatching', 'NonFiniteLossHook', 'ResumableLoader',
    'allreduce_gradients', 'atomic_save_checkpoint', 'get_random_states',
    'remove_stale_temporary_checkpoints', 'set_random_states'
]
