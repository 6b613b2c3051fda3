import pytest
import torch

from cascade_clip import tokenize
from cascade_clip.models.backbones import (CLIPTextEncoder, CLIPVisionTransformer,
                                           VPTCLIPVisionTransformer)
from tests import reference as R

VIT = dict(input_resolution=64, patch_size=16, width=64, layers=12, heads=4, output_dim=32)
OUT = [5, 6, 7, 8, 9, 10]


def vpt(**kw):
    args = dict(VIT, out_indices=OUT, num_tokens=5, prompt_dim=64, total_d_layer=11, drop_path_rate=0.1)
    args.update(kw)
    return VPTCLIPVisionTransformer(**args)


def unpack(out):
    """(levels + dense, global) of a VisualFeatures, in the order the references return."""
    return list(out.levels) + [out.dense], out.global_emb


def assert_maps_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('fmt', ['torchscript', 'state_dict'])
def test_vpt_loads_clip_and_matches_reference(tiny_clip, fmt):
    path = tiny_clip[0] if fmt == 'torchscript' else tiny_clip[1]
    sd_file = tiny_clip[2]
    m = vpt(pretrained=path)
    m.init_weights()
    sd = m.state_dict()
    for k, v in sd_file.items():
        if k.startswith('visual.'):
            assert torch.equal(sd[k[len('visual.'):]], v), k
    m.eval()
    torch.manual_seed(1)
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps, g = unpack(m(img))
        ref_maps, ref_g = R.vpt_forward(img, sd, patch=16, grid=4, layers=12, heads=4,
                                        out_indices=OUT, num_tokens=5, total_d_layer=11)
    assert len(maps) == 7 and maps[0].shape == (2, 32, 4, 4)
    assert_maps_close(maps, ref_maps)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(maps[3].norm(dim=1), torch.ones(2, 4, 4))


@pytest.mark.parametrize('total_d_layer', [0, 4])
def test_vpt_shallow_and_partial_deep_prompts_match_reference(total_d_layer):
    torch.manual_seed(0)
    m = vpt(total_d_layer=total_d_layer).eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps, g = unpack(m(img))
        ref_maps, ref_g = R.vpt_forward(img, m.state_dict(), patch=16, grid=4, layers=12, heads=4,
                                        out_indices=OUT, num_tokens=5, total_d_layer=total_d_layer)
    assert_maps_close(maps, ref_maps)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)


def test_vpt_non_square_input_and_pos_resize_from_checkpoint_grid(tiny_clip):
    # checkpoint grid 4x4 (64 px / 16); model grid 8x8 (128 px): resized at load time,
    # then bilinearly to the 4x6 grid of a 64x96 image at run time.
    m = vpt(input_resolution=128, pretrained=tiny_clip[0])
    m.init_weights()
    assert m.positional_embedding.shape == (65, 64)
    pos_ckpt = tiny_clip[2]['visual.positional_embedding']
    grid = pos_ckpt[1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    spatial = R.F.interpolate(grid, size=(8, 8), mode='bilinear', align_corners=False)
    torch.testing.assert_close(m.positional_embedding.data,
                               torch.cat([pos_ckpt[:1], spatial.reshape(64, 64).t()]))
    m.eval()
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps, g = unpack(m(img))
        ref_maps, _ = R.vpt_forward(img, m.state_dict(), patch=16, grid=8, layers=12, heads=4,
                                    out_indices=OUT, num_tokens=5, total_d_layer=11)
    assert all(x.shape == (1, 32, 4, 6) for x in maps)
    assert_maps_close(maps, ref_maps)


@pytest.mark.parametrize('out_indices', [[11], [3, 7, 11]])
def test_clip_vit_matches_reference(tiny_clip, out_indices):
    m = CLIPVisionTransformer(**VIT, out_indices=out_indices, get_embeddings=True,
                              pretrained=tiny_clip[0])
    m.init_weights()
    m.eval()
    img = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        out = m(img)
        ref_maps, ref_g = R.clip_vit_forward(img, m.state_dict(), patch=16, grid=4, layers=12,
                                             heads=4, out_indices=out_indices)
    maps, g = unpack(out)
    assert_maps_close(maps, ref_maps)
    # one raw (width 64) map per out index, whatever their number, then the dense embedding
    assert len(out.levels) == len(out_indices) and out.levels[0].shape == (2, 64, 4, 5)
    assert out.dense.shape == (2, 32, 4, 5)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)


def test_text_encoder_loads_and_matches_reference(tiny_clip):
    for path in tiny_clip[:2]:
        m = CLIPTextEncoder(context_length=77, transformer_width=32, transformer_heads=4,
                            transformer_layers=2, embed_dim=32, pretrained=path)
        m.init_weights()
        m.eval()
        tokens = tokenize(['a photo of a cat', 'a photo of a traffic light.', 'wall-concrete'])
        with torch.no_grad():
            out = m(tokens)
            ref = R.text_forward(tokens, m.state_dict(), layers=2, heads=4)
        assert out.shape == (3, 32)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        assert torch.equal(m.token_embedding.weight, tiny_clip[2]['token_embedding.weight'])


def test_text_encoder_truncates_positional_embedding(tiny_clip):
    m = CLIPTextEncoder(context_length=16, transformer_width=32, transformer_heads=4,
                        transformer_layers=2, embed_dim=32, pretrained=tiny_clip[0])
    m.init_weights()
    torch.testing.assert_close(m.positional_embedding.data, tiny_clip[2]['positional_embedding'][:16])


def test_width_mismatch_is_a_clear_error(tiny_clip):
    m = vpt(width=96, prompt_dim=96, heads=4, pretrained=tiny_clip[0])
    with pytest.raises(ValueError, match='visual width 64.*config asks for 96'):
        m.init_weights()
    t = CLIPTextEncoder(transformer_width=48, transformer_heads=4, transformer_layers=2,
                        embed_dim=32, pretrained=tiny_clip[0])
    with pytest.raises(ValueError, match='text width 32.*config asks for 48'):
        t.init_weights()


def test_missing_clip_file_is_a_clear_error(tmp_path):
    m = vpt(pretrained=str(tmp_path / 'ViT-B-16.pt'))
    with pytest.raises(FileNotFoundError, match='ViT-B-16.pt'):
        m.init_weights()


def test_parameter_names_and_shapes_vit_b16_and_l14_style():
    # ViT-B/16 names and shapes at 512 px (published checkpoint layout), built on the meta device: no memory
    with torch.device('meta'):
        b = VPTCLIPVisionTransformer()
        l14 = VPTCLIPVisionTransformer(input_resolution=448, patch_size=14, width=1024, layers=24,
                                       heads=16, output_dim=768, prompt_dim=1024,
                                       out_indices=list(range(12, 23)), total_d_layer=23)
    shapes = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    assert shapes['conv1.weight'] == (768, 3, 16, 16)
    assert shapes['positional_embedding'] == (1025, 768)
    assert shapes['transformer.resblocks.11.attn.in_proj_weight'] == (2304, 768)
    assert shapes['transformer.resblocks.11.mlp.c_fc.weight'] == (3072, 768)
    assert shapes['proj'] == (768, 512)
    assert shapes['proj_layers'] == (6, 768, 512)
    assert shapes['prompt_embeddings'] == (1, 50, 768)
    assert shapes['deep_prompt_embeddings'] == (11, 50, 768)
    assert shapes['prompt_proj.weight'] == (768, 768)
    assert shapes['ln_layers.5.weight'] == (768, )
    assert 'conv1.bias' not in shapes and 'ln_layers.6.weight' not in shapes
    s = {k: tuple(v.shape) for k, v in l14.state_dict().items()}
    assert s['conv1.weight'] == (1024, 3, 14, 14)
    assert s['positional_embedding'] == (32 * 32 + 1, 1024)
    assert s['proj_layers'] == (11, 1024, 768)
    assert s['deep_prompt_embeddings'] == (23, 50, 1024)
    with torch.device('meta'):
        t = CLIPTextEncoder(transformer_width=768, transformer_heads=12, embed_dim=768)
    assert tuple(t.text_projection.shape) == (768, 768)
    assert tuple(t.token_embedding.weight.shape) == (49408, 768)


def test_prompt_initialisation_ranges():
    torch.manual_seed(0)
    m = vpt()
    val = (6. / (3 * 16 * 16 + 64))**0.5
    assert m.prompt_embeddings.abs().max() <= val
    assert m.deep_prompt_embeddings.abs().max() <= val
    assert m.deep_prompt_embeddings.abs().max() > 0.9 * val
    assert m.prompt_norm.eps == 1e-6


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='out_indices'):
        vpt(out_indices=[5, 12])
    with pytest.raises(ValueError, match='prompt_dim'):
        vpt(prompt_dim=32)
