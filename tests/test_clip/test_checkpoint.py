import pytest
import torch
import torch.nn.functional as F

from cascade_clip.clip import (convert_clip_text, convert_clip_visual, load_clip_state_dict,
                               resize_pos_embed)


def test_convert_visual_and_text_keys():
    sd = {
        'visual.conv1.weight': torch.zeros(1),
        'visual.transformer.resblocks.0.ln_1.weight': torch.zeros(1),
        'transformer.resblocks.0.ln_1.weight': torch.ones(1),
        'token_embedding.weight': torch.ones(1),
        'positional_embedding': torch.arange(80.).reshape(80, 1),
        'text_projection': torch.ones(1),
        'ln_final.bias': torch.ones(1),
        'logit_scale': torch.ones(1),
        'input_resolution': torch.tensor(224),
    }
    assert set(convert_clip_visual(sd)) == {'conv1.weight', 'transformer.resblocks.0.ln_1.weight'}
    text = convert_clip_text(sd, context_length=77)
    assert set(text) == {'transformer.resblocks.0.ln_1.weight', 'token_embedding.weight',
                         'positional_embedding', 'text_projection', 'ln_final.bias'}
    assert text['positional_embedding'].shape == (77, 1)
    assert text['positional_embedding'][-1, 0] == 76
    assert 'visual.conv1.weight' in sd  # pure: input untouched


def test_resize_pos_embed_4x4_to_8x8_keeps_class_row():
    torch.manual_seed(0)
    pos = torch.randn(17, 6)
    out = resize_pos_embed(pos, (8, 8))
    assert out.shape == (65, 6)
    assert torch.equal(out[0], pos[0])
    grid = pos[1:].reshape(1, 4, 4, 6).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(8, 8), mode='bilinear', align_corners=False)
    torch.testing.assert_close(out[1:], ref.reshape(6, 64).t())
    # non-square target grid, and the grid read off the tensor (here 4x4, not 14x14)
    assert resize_pos_embed(pos, (4, 6)).shape == (25, 6)
    assert resize_pos_embed(pos, (4, 4)) is pos
    with pytest.raises(ValueError, match='square grid'):
        resize_pos_embed(torch.randn(18, 6), (4, 4))


def test_load_torchscript_and_state_dict_agree(tiny_clip):
    ts, sd_path, sd = tiny_clip
    a, b = load_clip_state_dict(ts), load_clip_state_dict(sd_path)
    assert set(a) == set(b) == set(sd)
    for k in sd:
        assert torch.equal(a[k], sd[k]) and torch.equal(b[k], sd[k])


def test_missing_file_names_it_and_says_where_weights_come_from(tmp_path):
    path = str(tmp_path / 'ViT-B-16.pt')
    with pytest.raises(FileNotFoundError, match='ViT-B-16.pt.*clip_pretrain'):
        load_clip_state_dict(path)


def test_not_a_clip_file(tmp_path):
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'this is not a checkpoint')
    with pytest.raises(ValueError, match='junk.pt is not a CLIP checkpoint'):
        load_clip_state_dict(str(junk))
    other = tmp_path / 'other.pth'
    torch.save({'backbone.conv.weight': torch.zeros(1)}, other)
    with pytest.raises(ValueError, match='other.pth is not a CLIP checkpoint'):
        load_clip_state_dict(str(other))
