from .hooks import GradAllReduceOptimizerHook, GradScalerOptimizerHook, allreduce_gradients
from .runner import AtomicIterBasedRunner, atomic_save_checkpoint

__all__ = [
    'AtomicIterBasedRunner', 'GradAllReduceOptimizerHook', 'GradScalerOptimizerHook',
    'allreduce_gradients', 'atomic_save_checkpoint'
]
