"""Straightforward (sequence-first, explicit softmax) CLIP / VPT computations for the tests."""
import torch
import torch.nn.functional as F


def ln(x, sd, name, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'], eps)


def block(x, sd, p, heads, causal=False):
    """x: (L, B, C), CLIP residual attention block with parameters sd[p + ...]."""
    L, B, C = x.shape
    h = ln(x, sd, p + 'ln_1')
    qkv = h @ sd[p + 'attn.in_proj_weight'].t() + sd[p + 'attn.in_proj_bias']
    q, k, v = qkv.chunk(3, dim=-1)
    d = C // heads

    def split(t):  # (L, B, C) -> (B*heads, L, d)
        return t.reshape(L, B * heads, d).transpose(0, 1)

    a = split(q) @ split(k).transpose(1, 2) / d**0.5
    if causal:
        mask = torch.full((L, L), float('-inf')).triu(1)
        a = a + mask
    a = a.softmax(-1)
    o = (a @ split(v)).transpose(0, 1).reshape(L, B, C)
    o = o @ sd[p + 'attn.out_proj.weight'].t() + sd[p + 'attn.out_proj.bias']
    x = x + o
    h = ln(x, sd, p + 'ln_2')
    h = h @ sd[p + 'mlp.c_fc.weight'].t() + sd[p + 'mlp.c_fc.bias']
    h = h * torch.sigmoid(1.702 * h)
    h = h @ sd[p + 'mlp.c_proj.weight'].t() + sd[p + 'mlp.c_proj.bias']
    return x + h


def embed(img, sd, patch, grid):
    """Patch tokens + class token + position embedding resized to the image grid, then ln_pre."""
    x = F.conv2d(img, sd['conv1.weight'], stride=patch)
    B, C, h, w = x.shape
    x = x.reshape(B, C, h * w).permute(0, 2, 1)
    cls = sd['class_embedding'].expand(B, 1, C)
    x = torch.cat([cls, x], 1)
    pos = sd['positional_embedding']
    sp = pos[1:].reshape(1, grid, grid, C).permute(0, 3, 1, 2)
    sp = F.interpolate(sp, size=(h, w), mode='bilinear', align_corners=False)
    sp = sp.reshape(1, C, h * w).permute(0, 2, 1)
    x = x + torch.cat([(pos[0] + sd['class_embedding']).reshape(1, 1, C), sp], 1)
    return ln(x, sd, 'ln_pre'), h, w


def vpt_forward(img, sd, *, patch, grid, layers, heads, out_indices, num_tokens, total_d_layer):
    """The published forward of VPTCLIPVisionTransformer in eval mode."""
    x, h, w = embed(img, sd, patch, grid)
    B, n = x.shape[0], h * w

    def prompt(e):
        return (e @ sd['prompt_proj.weight'].t() + sd['prompt_proj.bias']).reshape(1, num_tokens, -1).expand(B, -1, -1)

    x = torch.cat([x[:, :1], prompt(sd['prompt_embeddings']), x[:, 1:]], 1).permute(1, 0, 2)
    feats = []
    for i in range(layers):
        if total_d_layer > 0 and 1 <= i <= total_d_layer:
            x = torch.cat([x[:1], prompt(sd['deep_prompt_embeddings'][i - 1]).permute(1, 0, 2), x[1 + num_tokens:]], 0)
        elif total_d_layer > 0 and i > total_d_layer:
            x = torch.cat([x[:1], x[-n:]], 0)
        x = block(x, sd, f'transformer.resblocks.{i}.', heads)
        if i in out_indices:
            k = out_indices.index(i)
            t = ln(x, sd, 'prompt_norm', 1e-6)
            t = ln(t, sd, f'ln_layers.{k}') @ sd['proj_layers'][k]
            t = t.permute(1, 0, 2)[:, -n:].permute(0, 2, 1).reshape(B, -1, h, w)
            feats.append(t / t.norm(dim=1, keepdim=True))
    x = ln(x, sd, 'prompt_norm', 1e-6).permute(1, 0, 2)
    x = ln(x, sd, 'ln_post') @ sd['proj']
    g = x[:, 0]
    dense = x[:, -n:].reshape(B, h, w, -1).permute(0, 3, 1, 2)
    feats.append(dense / dense.norm(dim=1, keepdim=True))
    return feats, g / g.norm(dim=1, keepdim=True)


def clip_vit_forward(img, sd, *, patch, grid, layers, heads, out_indices):
    """CLIPVisionTransformer (no prompts, get_embeddings=True)."""
    x, h, w = embed(img, sd, patch, grid)
    B = x.shape[0]
    x = x.permute(1, 0, 2)
    feats = []
    for i in range(layers):
        x = block(x, sd, f'transformer.resblocks.{i}.', heads)
        if i in out_indices:
            feats.append(x.permute(1, 0, 2)[:, 1:].permute(0, 2, 1).reshape(B, -1, h, w))
    x = ln(x.permute(1, 0, 2), sd, 'ln_post') @ sd['proj']
    d = x[:, 1:].reshape(B, h, w, -1).permute(0, 3, 1, 2)
    feats.append(d / d.norm(dim=1, keepdim=True))
    g = x[:, 0]
    return feats, g / g.norm(dim=1, keepdim=True)


def text_forward(tokens, sd, *, layers, heads):
    """CLIP text encoder over the full context with the causal mask."""
    x = sd['token_embedding.weight'][tokens] + sd['positional_embedding'][:tokens.shape[1]]
    x = x.permute(1, 0, 2)
    for i in range(layers):
        x = block(x, sd, f'transformer.resblocks.{i}.', heads, causal=True)
    x = ln(x.permute(1, 0, 2), sd, 'ln_final')
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ sd['text_projection']
