from .mask_loss import (SegLossPlus, count_masks, dice_loss, focal_and_dice_from_labels,
                        label_to_onehot, lean_focal_and_dice, reduce_num_masks,
                        sigmoid_focal_loss)

__all__ = [
    'SegLossPlus', 'sigmoid_focal_loss', 'dice_loss', 'focal_and_dice_from_labels',
    'lean_focal_and_dice', 'count_masks', 'label_to_onehot', 'reduce_num_masks'
]
