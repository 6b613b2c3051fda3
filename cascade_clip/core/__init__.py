from .hooks import (GradAllReduceOptimizerHook, GradScalerOptimizerHook, MicroBatching,
                    MicroBatchOptimizerHook, allreduce_gradients)
from .runner import AtomicIterBasedRunner, atomic_save_checkpoint

__all__ = [
    'AtomicIterBasedRunner', 'GradAllReduceOptimizerHook', 'GradScalerOptimizerHook',
    'MicroBatchOptimizerHook', 'MicroBatching', 'allreduce_gradients', 'atomic_save_checkpoint'
]
