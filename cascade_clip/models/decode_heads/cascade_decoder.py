"""Decoder layers of the cascade, with every tensor of the published checkpoints.

Only what is used is computed: cross-attention, then the post-norm FFN; a decoder's last layer
only yields its attention logits (the mask), the rest of it is frozen."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MaskCrossAttention(nn.Module):
    """Cross-attention of class queries onto image tokens (``q``, ``k``, ``v``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dims {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.k = nn.Linear(dim, dim, bias=True)
        self.v = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop

    def mask_logits(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Head-averaged pre-softmax logits, (B, K, C) x (B, N, C) -> (B, K, N)."""
        # the mean over heads of q_h·k_hᵀ is (q·kᵀ)/heads: one full-width matmul
        q, k = self.q(query), self.k(memory)
        return torch.bmm(q, k.transpose(1, 2)) * (self.scale / self.num_heads)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Attention output (B, K, C) (fused softmax attention, dropout on the weights)."""
        B, K, C = query.shape
        N = memory.shape[1]
        H = self.num_heads
        q = self.q(query).reshape(B, K, H, C // H).transpose(1, 2)
        k = self.k(memory).reshape(B, N, H, C // H).transpose(1, 2)
        v = self.v(memory).reshape(B, N, H, C // H).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, K, C))


class CascadeDecoderLayer(nn.Module):
    """Post-norm decoder layer whose self-attention (and ``norm1``) exist but are unused."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)  # unused
        self.multihead_attn = MaskCrossAttention(d_model, nhead, attn_drop=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)  # unused
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """tgt (B, K, C), memory (B, N, C) -> updated tgt (B, K, C)."""
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(tgt, memory)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt), inplace=True)))
        return self.norm3(tgt + self.dropout3(ffn))

    def unused_parameter_names(self, last: bool):
        """Names of parameters this layer never uses (all of the layer after the logits if last)."""
        names = [n for n, _ in self.named_parameters() if n.startswith(('self_attn.', 'norm1.'))]
        if last:
            names += [n for n, _ in self.named_parameters()
                      if n.startswith(('multihead_attn.v.', 'multihead_attn.proj.', 'linear1.',
                                       'linear2.', 'norm2.', 'norm3.'))]
        return names


class CascadeDecoder(nn.Module):
    """``layers``: a stack of decoder layers; returns the last layer's mask logits."""

    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int,
                 dropout: float = 0.1):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {num_layers}')
        self.layers = nn.ModuleList(CascadeDecoderLayer(d_model, nhead, dim_feedforward, dropout)
                                    for _ in range(num_layers))
        for i, layer in enumerate(self.layers):
            params = dict(layer.named_parameters())
            for name in layer.unused_parameter_names(last=i == num_layers - 1):
                params[name].requires_grad_(False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query (B, K, C), memory (B, N, C) -> head-averaged logits (B, K, N)."""
        for layer in self.layers[:-1]:
            query = layer(query, memory)
        return self.layers[-1].multihead_attn.mask_logits(query, memory)
