"""CLIP's byte-level BPE tokenizer (algorithm from OpenAI CLIP, MIT licence: LICENSE_CLIP)."""
import gzip
import html
import os.path as osp
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple, Union

import ftfy
import regex as re
import torch

DEFAULT_BPE_PATH = osp.join(osp.dirname(osp.abspath(__file__)), 'bpe_simple_vocab_16e6.txt.gz')
SOT_TOKEN = '<|startoftext|>'
EOT_TOKEN = '<|endoftext|>'


@lru_cache()
def bytes_to_unicode() -> Dict[int, str]:
    """Reversible map from utf-8 bytes to printable unicode characters (as in GPT-2/CLIP)."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + \
        list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word: Tuple[str, ...]) -> set:
    """Set of adjacent symbol pairs of a word given as a tuple of symbols."""
    return {(a, b) for a, b in zip(word[:-1], word[1:])}


def basic_clean(text: str) -> str:
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text: str) -> str:
    return re.sub(r'\s+', ' ', text).strip()


class SimpleTokenizer:
    """CLIP's BPE tokenizer: 49408 tokens (256 bytes, 256 byte+</w>, 48894 merges, 2 special)."""

    def __init__(self, bpe_path: str = DEFAULT_BPE_PATH):
        if not osp.isfile(bpe_path):
            raise FileNotFoundError(f'CLIP BPE vocabulary not found: {bpe_path}')
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with gzip.open(bpe_path) as f:
            merges = f.read().decode('utf-8').split('\n')
        merges = merges[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + '</w>' for v in vocab]
        vocab.extend(''.join(m) for m in merges)
        vocab.extend([SOT_TOKEN, EOT_TOKEN])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {SOT_TOKEN: SOT_TOKEN, EOT_TOKEN: EOT_TOKEN}
        self.pat = re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            re.IGNORECASE)
        self.sot_token = self.encoder[SOT_TOKEN]
        self.eot_token = self.encoder[EOT_TOKEN]
        self.vocab_size = len(self.encoder)

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>', )
        pairs = get_pairs(word)
        if not pairs:
            return token + '</w>'
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float('inf')))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word: List[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        out = ' '.join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> List[int]:
        """BPE ids of ``text`` (cleaned with ftfy, whitespace-collapsed, lower-cased)."""
        bpe_tokens: List[int] = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in re.findall(self.pat, text):
            token = ''.join(self.byte_encoder[b] for b in token.encode('utf-8'))
            bpe_tokens.extend(self.encoder[t] for t in self.bpe(token).split(' '))
        return bpe_tokens

    def decode(self, tokens: Sequence[int]) -> str:
        text = ''.join(self.decoder[int(t)] for t in tokens)
        text = bytearray([self.byte_decoder[c] for c in text]).decode('utf-8', errors='replace')
        return text.replace('</w>', ' ')


@lru_cache(maxsize=1)
def get_tokenizer() -> SimpleTokenizer:
    """The shared tokenizer (the vocabulary is read once per process)."""
    return SimpleTokenizer()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77,
             truncate: bool = False) -> torch.LongTensor:
    """(N, context_length) LongTensor of text(s) for CLIP's text encoder: sot, BPE ids, eot, zeros.

    Args:
        texts: a string or a sequence of strings.
        context_length: length of each row (CLIP uses 77).
        truncate: cut texts that are too long (eot kept last) instead of raising.
    """
    if isinstance(texts, str):
        texts = [texts]
    tok = get_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [tok.sot_token] + tok.encode(text) + [tok.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(
                    f'text {text!r} has {len(ids)} tokens, longer than the context length '
                    f'{context_length}; shorten it or pass truncate=True')
            ids = ids[:context_length]
            ids[-1] = tok.eot_token
        result[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return result
