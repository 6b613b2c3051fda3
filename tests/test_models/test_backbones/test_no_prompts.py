"""backbone.num_tokens=0: the cascade on a frozen CLIP (no prompt parameters, the plain CLIP ViT's
outputs, only the head and what exclude_key names trained); the published configs' style key."""
import pytest
import torch
import torch.nn.functional as F

from cascade_clip.models.backbones import CLIPVisionTransformer, VPTCLIPVisionTransformer
from tests.tiny import build, tiny_model_cfg

VIT = dict(input_resolution=64, patch_size=16, width=64, layers=12, heads=4, output_dim=32)
OUT = [5, 6, 7, 8, 9, 10]


def test_no_prompts_is_the_plain_clip_vit():
    torch.manual_seed(0)
    vpt = VPTCLIPVisionTransformer(**VIT, out_indices=OUT, num_tokens=0, prompt_dim=64,
                                   total_d_layer=11, drop_path_rate=0.0).eval()
    assert not [n for n, _ in vpt.named_parameters() if 'prompt' in n]
    plain = CLIPVisionTransformer(**VIT, out_indices=OUT, get_embeddings=True).eval()
    own = vpt.state_dict()
    missing, unexpected = plain.load_state_dict(own, strict=False)
    assert not missing  # every CLIP weight comes from the prompt-less encoder
    assert sorted({k.split('.')[0] for k in unexpected}) == ['ln_layers', 'proj_layers']
    img = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        got, want = vpt(img), plain(img)
    torch.testing.assert_close(got.dense, want.dense, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.global_emb, want.global_emb, atol=1e-6, rtol=1e-6)
    # the level maps: the plain encoder's block outputs through the level LayerNorm and projection
    for k, raw in enumerate(want.levels):  # (B, width, h, w)
        tokens = raw.flatten(2).transpose(1, 2)
        t = F.layer_norm(tokens, (64, ), vpt.ln_layers[k].weight, vpt.ln_layers[k].bias, 1e-5)
        t = t @ vpt.proj_layers[k]
        ref = F.normalize(t.transpose(1, 2).reshape(raw.shape[0], -1, *raw.shape[2:]), dim=1)
        torch.testing.assert_close(got.levels[k], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('exclude_key,trained_backbone', [
    ('prompt', set()),  # the published key: nothing of a prompt-less encoder is trained
    (['ln_layers', 'proj_layers'], {'ln_layers', 'proj_layers'}),  # the level projections too
])
def test_no_prompts_trains_only_the_head_and_what_exclude_key_names(exclude_key, trained_backbone):
    torch.manual_seed(0)
    model = build(tiny_model_cfg(backbone=dict(num_tokens=0), exclude_key=exclude_key))
    model.train()
    img = torch.randn(2, 3, 64, 64)
    gt = torch.randint(0, 6, (2, 1, 64, 64))
    model.train_step(dict(img=img, img_metas=[{}] * 2, gt_semantic_seg=gt), None)['loss'].backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    backbone = {n for n, _ in model.named_parameters()
                if n.startswith('backbone.') and n.split('.')[1] in trained_backbone}
    # nothing outside the head and the named backbone parameters; all of those reached
    assert {n for n in got if not n.startswith('decode_head.')} == backbone
    assert {'decode_head.q_projs.0.weight', 'decode_head.cascade_decoders.2.layers.0.linear1.weight',
            'decode_head.cascade_decoders.0.layers.2.multihead_attn.k.weight'} <= got
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if not n.startswith('decode_head.')} == backbone


def test_negative_prompt_length_is_refused():
    with pytest.raises(ValueError, match=r'num_tokens must be a whole number >= 0 \(0: no prompts\), got -1'):
        VPTCLIPVisionTransformer(**VIT, out_indices=OUT, num_tokens=-1, prompt_dim=64)


def test_published_style_key_is_accepted_and_checked():
    cfg = tiny_model_cfg(backbone=dict(style='pytorch'), text_encoder=dict(style='pytorch'))
    with_style = build(cfg)
    assert not hasattr(with_style.backbone, 'style')
    with pytest.raises(ValueError, match=r"VPTCLIPVisionTransformer: style='pytroch' is not one of "
                       r"\['pytorch', 'caffe'\]"):
        build(tiny_model_cfg(backbone=dict(style='pytroch')))
    with pytest.raises(TypeError, match=r"unknown argument 'styel'"):
        build(tiny_model_cfg(text_encoder=dict(styel='pytorch')))
