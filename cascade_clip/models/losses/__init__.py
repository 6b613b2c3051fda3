from .loss_sum import LossSum, SumLoss
from .mask_loss import SegLossPlus, focal_dice_sums

__all__ = ['LossSum', 'SumLoss', 'SegLossPlus', 'focal_dice_sums']
