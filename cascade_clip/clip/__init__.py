from .checkpoint import (convert_clip_text, convert_clip_visual, convert_hf_clip,
                         load_clip_state_dict, resize_pos_embed)
from .templates import MULTI_TEMPLATES, SINGLE_TEMPLATE
from .tokenizer import SimpleTokenizer, get_tokenizer, tokenize

__all__ = [
    'tokenize', 'SimpleTokenizer', 'get_tokenizer', 'load_clip_state_dict', 'resize_pos_embed',
    'convert_clip_visual', 'convert_clip_text', 'convert_hf_clip', 'SINGLE_TEMPLATE', 'MULTI_TEMPLATES'
]
