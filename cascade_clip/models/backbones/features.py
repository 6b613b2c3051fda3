"""``VisualFeatures``: what the image encoders hand to the decode head, by name."""
from typing import NamedTuple, Optional, Tuple

import torch


class VisualFeatures(NamedTuple):
    """Outputs of a CLIP image encoder.

    Attributes:
        levels: one (B, C, h, w) map per entry of the encoder's ``out_indices``.
        dense: (B, D, h, w) the last layer's L2-normalised dense embedding, or None.
        global_emb: (B, D) the class token's L2-normalised embedding, or None.
    """
    levels: Tuple[torch.Tensor, ...]
    dense: Optional[torch.Tensor] = None
    global_emb: Optional[torch.Tensor] = None

    def map(self, index: int) -> torch.Tensor:
        """``levels[index]`` for index >= 0; -1 is the last layer's ``dense`` map."""
        if index == -1:
            if self.dense is None:
                raise ValueError('the dense map (-1) was asked for, but the image encoder was '
                                 'built without get_embeddings')
            return self.dense
        if not 0 <= index < len(self.levels):
            raise ValueError(f'level {index} was asked for, but the image encoder returns '
                             f'{len(self.levels)} levels (one per out index; -1 is the last '
                             f'layer\'s dense map)')
        return self.levels[index]
