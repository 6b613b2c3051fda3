"""Class text embeddings from CLIP's text encoder."""
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from .templates import SINGLE_TEMPLATE
from .tokenizer import tokenize


@torch.no_grad()
def compute_text_embeddings(text_encoder: nn.Module, class_names: Sequence[str],
                            templates: Sequence[str] = (SINGLE_TEMPLATE, ),
                            context_length: int = 77, batch_size: int = 256,
                            progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """(K, D) float32 class embeddings: the mean of the templates' unit rows, re-normalised;
    ``progress(n)`` gets the number of prompts done after each batch."""
    if len(class_names) == 0:
        raise ValueError('the class list is empty')
    device = next(text_encoder.parameters()).device
    prompts = [t.format(name) for t in templates for name in class_names]
    tokens = tokenize(prompts, context_length=context_length)
    was_training = text_encoder.training
    text_encoder.eval()
    feats = []
    with torch.autocast(device_type=device.type, enabled=False):
        for i in range(0, len(prompts), batch_size):
            f = text_encoder(tokens[i:i + batch_size].to(device)).float()
            feats.append(f / f.norm(dim=-1, keepdim=True))
            if progress is not None:
                progress(min(i + batch_size, len(prompts)))
    text_encoder.train(was_training)
    emb = torch.cat(feats).reshape(len(templates), len(class_names), -1).mean(0)
    return emb / emb.norm(dim=-1, keepdim=True)
