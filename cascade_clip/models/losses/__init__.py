from .mask_loss import (SegLossPlus, dice_loss, focal_and_dice_from_labels, label_to_onehot,
                        reduce_num_masks, sigmoid_focal_loss)

__all__ = [
    'SegLossPlus', 'sigmoid_focal_loss', 'dice_loss', 'focal_and_dice_from_labels',
    'label_to_onehot', 'reduce_num_masks'
]
