"""CLIP weights from OpenAI's archive, open_clip's copy and Hugging Face's CLIPModel give the
same encoders; OpenAI's release files are checked against their SHA-256.

The files in the other layouts are written here from the tiny CLIP's OpenAI state dict by
mappings of this file's own (:func:`to_hugging_face`, :func:`to_open_clip`), following the
layouts those libraries save, independently of the converter under test.
"""
import hashlib
import logging
import os.path as osp

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cascade_clip import tokenize
from cascade_clip.clip import convert_hf_clip, load_clip_state_dict
from cascade_clip.clip import checkpoint as clip_checkpoint
from cascade_clip.models.backbones import CLIPTextEncoder, CLIPVisionTransformer
from cascade_clip.utils import CheckpointError
from tests.conftest import TINY
from tools import build_text_embeddings
from tools.demo_data.tiny_clip import save_tiny_clip

# another size, every number different from the usual tiny CLIP's
OTHER = dict(embed_dim=24, image_resolution=32, vision_patch_size=8, vision_width=48,
             vision_layers=3, vision_heads=3, context_length=20, transformer_width=16,
             transformer_heads=2, transformer_layers=2)


def to_hugging_face(sd, with_position_ids=True):
    """OpenAI CLIP state dict -> transformers' CLIPModel state dict (as ``save_pretrained``
    writes it; older files also carry the ``position_ids`` buffers)."""
    hf = {}

    def tower(src, dst):
        blocks = sorted({int(k[len(src):].split('.')[0]) for k in sd if k.startswith(src)})
        for i in blocks:
            a, b = f'{src}{i}.', f'{dst}{i}.'
            q, k, v = sd[a + 'attn.in_proj_weight'].chunk(3, dim=0)
            qb, kb, vb = sd[a + 'attn.in_proj_bias'].chunk(3, dim=0)
            hf.update({
                b + 'self_attn.q_proj.weight': q, b + 'self_attn.q_proj.bias': qb,
                b + 'self_attn.k_proj.weight': k, b + 'self_attn.k_proj.bias': kb,
                b + 'self_attn.v_proj.weight': v, b + 'self_attn.v_proj.bias': vb,
                b + 'self_attn.out_proj.weight': sd[a + 'attn.out_proj.weight'],
                b + 'self_attn.out_proj.bias': sd[a + 'attn.out_proj.bias'],
                b + 'layer_norm1.weight': sd[a + 'ln_1.weight'],
                b + 'layer_norm1.bias': sd[a + 'ln_1.bias'],
                b + 'mlp.fc1.weight': sd[a + 'mlp.c_fc.weight'],
                b + 'mlp.fc1.bias': sd[a + 'mlp.c_fc.bias'],
                b + 'mlp.fc2.weight': sd[a + 'mlp.c_proj.weight'],
                b + 'mlp.fc2.bias': sd[a + 'mlp.c_proj.bias'],
                b + 'layer_norm2.weight': sd[a + 'ln_2.weight'],
                b + 'layer_norm2.bias': sd[a + 'ln_2.bias'],
            })

    hf['logit_scale'] = sd['logit_scale']
    hf['text_model.embeddings.token_embedding.weight'] = sd['token_embedding.weight']
    hf['text_model.embeddings.position_embedding.weight'] = sd['positional_embedding']
    tower('transformer.resblocks.', 'text_model.encoder.layers.')
    hf['text_model.final_layer_norm.weight'] = sd['ln_final.weight']
    hf['text_model.final_layer_norm.bias'] = sd['ln_final.bias']
    hf['vision_model.embeddings.class_embedding'] = sd['visual.class_embedding']
    hf['vision_model.embeddings.patch_embedding.weight'] = sd['visual.conv1.weight']
    hf['vision_model.embeddings.position_embedding.weight'] = sd['visual.positional_embedding']
    hf['vision_model.pre_layrnorm.weight'] = sd['visual.ln_pre.weight']
    hf['vision_model.pre_layrnorm.bias'] = sd['visual.ln_pre.bias']
    tower('visual.transformer.resblocks.', 'vision_model.encoder.layers.')
    hf['vision_model.post_layernorm.weight'] = sd['visual.ln_post.weight']
    hf['vision_model.post_layernorm.bias'] = sd['visual.ln_post.bias']
    hf['visual_projection.weight'] = sd['visual.proj'].t()  # nn.Linear(width, embed, bias=False)
    hf['text_projection.weight'] = sd['text_projection'].t()
    if with_position_ids:
        for name, pos in (('text_model', 'positional_embedding'),
                          ('vision_model', 'visual.positional_embedding')):
            hf[f'{name}.embeddings.position_ids'] = torch.arange(sd[pos].shape[0])[None]
    return {k: v.contiguous().clone() for k, v in hf.items()}


def to_open_clip(sd):
    """OpenAI CLIP state dict -> open_clip's copy of the OpenAI weights: the same names (its
    ViT keeps OpenAI's module names), without the archive's bookkeeping buffers."""
    drop = ('input_resolution', 'context_length', 'vocab_size')
    return {k: v.clone() for k, v in sd.items() if k not in drop}


def write(sd, path):
    if path.endswith('.safetensors'):
        save_file(sd, path, metadata={'format': 'pt'})
    else:
        torch.save(sd, path)
    return path


NAMES = {('hf', '.bin'): 'pytorch_model.bin', ('hf', '.safetensors'): 'model.safetensors',
         ('hf', '.pth'): 'clip-vit-hf.pth', ('open_clip', '.bin'): 'open_clip_pytorch_model.bin',
         ('open_clip', '.safetensors'): 'open_clip_model.safetensors',
         ('open_clip', '.pth'): 'ViT-B-16-openai.pth'}


@pytest.fixture(scope='module')
def other_clip(tmp_path_factory):
    """(archive, HF .safetensors, state dict) of a tiny CLIP of other sizes."""
    d = tmp_path_factory.mktemp('other_clip')
    archive = str(d / 'other.pt')
    sd = save_tiny_clip(archive, torchscript=True, seed=3, **OTHER)
    return archive, write(to_hugging_face(sd), str(d / 'model.safetensors')), sd


def vit(path, sizes=TINY, out_indices=(3, 11)):
    m = CLIPVisionTransformer(input_resolution=sizes['image_resolution'],
                              patch_size=sizes['vision_patch_size'], width=sizes['vision_width'],
                              layers=sizes['vision_layers'], heads=sizes['vision_heads'],
                              output_dim=sizes['embed_dim'], out_indices=out_indices,
                              get_embeddings=True, pretrained=path)
    m.init_weights()
    return m.eval()


def image_features(m, size):
    torch.manual_seed(7)
    with torch.no_grad():
        out = m(torch.randn(2, 3, size, size))
    return list(out.levels) + [out.dense, out.global_emb]


def text_embeddings(clip, out, heads=4):
    build_text_embeddings.main(['--clip', clip, '--classes', 'road,sky,traffic light',
                                '--out', str(out), '--heads', str(heads), '--device', 'cpu'])
    return np.load(out)


@pytest.mark.parametrize('layout', ['hf', 'open_clip'])
@pytest.mark.parametrize('ext', ['.bin', '.pth', '.safetensors'])
def test_each_layout_gives_the_archive_weights_and_outputs(tiny_clip, tmp_path, layout, ext):
    archive, _, sd = tiny_clip
    convert = to_hugging_face if layout == 'hf' else to_open_clip
    path = write(convert(sd), str(tmp_path / NAMES[(layout, ext)]))
    got, want = load_clip_state_dict(path), load_clip_state_dict(archive)
    assert set(got) == set(want) == set(sd)
    for k, v in want.items():
        assert got[k].dtype == torch.float32 and torch.equal(got[k], v), k
    # image encoder: the same features, bit for bit
    for a, b in zip(image_features(vit(path), 64), image_features(vit(archive), 64)):
        assert torch.equal(a, b)
    # text embeddings written by tools/build_text_embeddings.py
    np.testing.assert_array_equal(text_embeddings(path, tmp_path / 'got.npy'),
                                  text_embeddings(archive, tmp_path / 'want.npy'))


def test_open_clip_training_checkpoint_with_module_prefix(tiny_clip, tmp_path):
    """open_clip's own checkpoints (epoch_N.pt) hold the state dict under "state_dict", with
    DistributedDataParallel's "module." prefix."""
    _, _, sd = tiny_clip
    path = str(tmp_path / 'epoch_32.pt')
    torch.save({'epoch': 32, 'name': 'run', 'state_dict': {
        'module.' + k: v for k, v in to_open_clip(sd).items()}}, path)
    got = load_clip_state_dict(path)
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


def test_sizes_come_from_the_weights(other_clip, tmp_path):
    """Patch 8, width 48, 3 layers, 3 heads; text width 16, 2 layers, context 20, embedding
    24: the HF file gives the archive's encoders at that size too."""
    archive, hf, sd = other_clip
    assert all(torch.equal(load_clip_state_dict(hf)[k], v) for k, v in sd.items())
    a, b = vit(hf, OTHER, (0, 2)), vit(archive, OTHER, (0, 2))
    assert a.conv1.weight.shape == (48, 3, 8, 8) and len(a.transformer.resblocks) == 3
    for x, y in zip(image_features(a, 32), image_features(b, 32)):
        assert torch.equal(x, y)
    assert image_features(a, 32)[-1].shape == (2, 24)
    enc = CLIPTextEncoder.from_clip(hf, heads=2)
    assert (enc.width, enc.transformer.layers, enc.embed_dim, enc.context_length) == (16, 2, 24, 20)
    ref = CLIPTextEncoder.from_clip(archive, heads=2)
    tokens = tokenize(['a photo of a cat', 'sky'], context_length=20)
    with torch.no_grad():
        assert torch.equal(enc(tokens), ref(tokens))
    np.testing.assert_array_equal(text_embeddings(hf, tmp_path / 'a.npy', heads=2),
                                  text_embeddings(archive, tmp_path / 'b.npy', heads=2))


def test_convert_hf_clip_by_hand():
    """Hand-made tensors: q;k;v concatenated in that order, projections transposed,
    position_ids dropped, every other name mapped; the input is left as it was."""
    q, k, v = torch.full((2, 2), 1.), torch.full((2, 2), 2.), torch.full((2, 2), 3.)
    proj = torch.tensor([[1., 2., 3.], [4., 5., 6.]])  # Linear(3 -> 2): (out, in)
    hf = {
        'text_model.encoder.layers.1.self_attn.v_proj.weight': v,
        'text_model.encoder.layers.1.self_attn.q_proj.weight': q,
        'text_model.encoder.layers.1.self_attn.k_proj.weight': k,
        'text_model.encoder.layers.1.self_attn.k_proj.bias': torch.tensor([7., 8.]),
        'text_model.encoder.layers.1.self_attn.q_proj.bias': torch.tensor([5., 6.]),
        'text_model.encoder.layers.1.self_attn.v_proj.bias': torch.tensor([9., 10.]),
        'vision_model.encoder.layers.0.mlp.fc2.bias': torch.tensor([1.]),
        'vision_model.encoder.layers.0.layer_norm2.weight': torch.tensor([2.]),
        'vision_model.pre_layrnorm.bias': torch.tensor([3.]),
        'vision_model.embeddings.patch_embedding.weight': torch.tensor([4.]),
        'vision_model.embeddings.position_ids': torch.arange(5)[None],
        'text_model.embeddings.position_ids': torch.arange(7)[None],
        'visual_projection.weight': proj,
        'logit_scale': torch.tensor(4.6),
    }
    before = dict(hf)
    out = convert_hf_clip(hf)
    assert out['transformer.resblocks.1.attn.in_proj_weight'].tolist() == [[1, 1], [1, 1], [2, 2],
                                                                           [2, 2], [3, 3], [3, 3]]
    assert out['transformer.resblocks.1.attn.in_proj_bias'].tolist() == [5, 6, 7, 8, 9, 10]
    assert out['visual.proj'].tolist() == [[1, 4], [2, 5], [3, 6]]
    assert out['visual.transformer.resblocks.0.mlp.c_proj.bias'].item() == 1
    assert out['visual.transformer.resblocks.0.ln_2.weight'].item() == 2
    assert out['visual.ln_pre.bias'].item() == 3
    assert out['visual.conv1.weight'].item() == 4
    assert set(out) == {'transformer.resblocks.1.attn.in_proj_weight',
                        'transformer.resblocks.1.attn.in_proj_bias', 'visual.proj',
                        'visual.transformer.resblocks.0.mlp.c_proj.bias',
                        'visual.transformer.resblocks.0.ln_2.weight', 'visual.ln_pre.bias',
                        'visual.conv1.weight', 'logit_scale'}
    assert hf.keys() == before.keys() and all(hf[n] is before[n] for n in hf)


def test_convert_hf_clip_refuses_unknown_keys_and_partial_attention():
    with pytest.raises(ValueError, match='the key "vision_model.head.probe" is not part of a '
                       'Hugging Face CLIPModel'):
        convert_hf_clip({'vision_model.head.probe': torch.zeros(1)})
    with pytest.raises(ValueError, match=r'transformer.resblocks.0.attn.in_proj_weight lacks the '
                       r'k/v projection\(s\)'):
        convert_hf_clip({'text_model.encoder.layers.0.self_attn.q_proj.weight': torch.zeros(1)})


def test_hf_file_with_a_foreign_key_names_the_file_and_key(tiny_clip, tmp_path):
    hf = to_hugging_face(tiny_clip[2])
    hf['vision_model.head.attention.in_proj_weight'] = torch.zeros(2)  # a SigLIP-style head
    path = write(hf, str(tmp_path / 'siglip.safetensors'))
    with pytest.raises(ValueError, match=f'{path} is not a usable Hugging Face CLIP checkpoint: '
                       f'the key "vision_model.head.attention.in_proj_weight"'):
        load_clip_state_dict(path)


@pytest.mark.parametrize('name', ['resnet.pth', 'resnet.safetensors'])
def test_foreign_weights_name_the_file_and_the_layouts(tmp_path, name):
    path = write({'backbone.conv1.weight': torch.zeros(2, 3), 'head.bias': torch.zeros(2)},
                 str(tmp_path / name))
    with pytest.raises(ValueError) as e:
        load_clip_state_dict(path)
    msg = str(e.value)
    assert msg.startswith(f'{path} is not a CLIP checkpoint: its keys ("backbone.conv1.weight", '
                          f'"head.bias", ...) are in none of the layouts read here.')
    assert 'OpenAI CLIP: its TorchScript archive (ViT-B-16.pt)' in msg
    assert '"visual.conv1.weight"' in msg
    assert 'Hugging Face transformers CLIPModel (model.safetensors, pytorch_model.bin)' in msg
    assert '"vision_model.embeddings.patch_embedding.weight"' in msg
    out = tmp_path / 'e.npy'
    with pytest.raises(SystemExit) as e:  # the tool ends with the message, no traceback
        build_text_embeddings.main(['--clip', path, '--classes', 'road', '--out', str(out)])
    assert str(e.value) == msg and not out.exists()


@pytest.mark.parametrize('data', [b'not a safetensors file at all',
                                  (64).to_bytes(8, 'little') + b'{"a": {"dtype": "F32"'])
def test_invalid_safetensors_file_is_named(tmp_path, data):
    path = tmp_path / 'model.safetensors'
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=f'{path} is not a valid .safetensors file '
                       r'\(Error while deserializing header'):
        load_clip_state_dict(str(path))


def test_truncated_safetensors_is_named(tiny_clip, tmp_path):
    path = write(to_hugging_face(tiny_clip[2]), str(tmp_path / 'model.safetensors'))
    data = open(path, 'rb').read()
    cut = tmp_path / 'cut.safetensors'
    cut.write_bytes(data[:len(data) - 100])
    with pytest.raises(CheckpointError, match=f'{cut} is not a valid .safetensors file'):
        load_clip_state_dict(str(cut))


# ---------------------------------------------------------------- OpenAI's release hashes
def test_openai_release_name_with_another_hash_warns(tiny_clip, tmp_path, caplog):
    path = tmp_path / 'ViT-B-16.pt'
    path.write_bytes(open(tiny_clip[0], 'rb').read())
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with caplog.at_level(logging.WARNING):
        sd = load_clip_state_dict(str(path))  # a warning, not an error
        load_clip_state_dict(str(path))  # read again (the text encoder): not warned again
    assert torch.equal(sd['visual.proj'], tiny_clip[2]['visual.proj'])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        f'{path} has SHA-256 {actual}, but OpenAI\'s ViT-B-16.pt has '
        f'5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f '
        f'(https://openaipublic.azureedge.net/clip/models/'
        f'5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt): the file '
        f'is damaged or not OpenAI\'s release; download it again if results look wrong')


def test_openai_release_name_with_its_hash_is_silent(tiny_clip, tmp_path, caplog, monkeypatch):
    path = tmp_path / 'ViT-L-14.pt'
    path.write_bytes(open(tiny_clip[0], 'rb').read())
    monkeypatch.setitem(clip_checkpoint.OPENAI_RELEASES, 'ViT-L-14.pt',
                        hashlib.sha256(path.read_bytes()).hexdigest())
    with caplog.at_level(logging.WARNING):
        load_clip_state_dict(str(path))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_other_names_are_not_hashed(tiny_clip, monkeypatch):
    monkeypatch.setattr(clip_checkpoint, 'sha256_of', lambda *a: pytest.fail('hashed'))
    assert osp.basename(tiny_clip[0]) not in clip_checkpoint.OPENAI_RELEASES
    load_clip_state_dict(tiny_clip[0])


def test_release_url_is_openais():
    """The table gives back OpenAI's URL of ViT-B/16 (openai/CLIP, clip/clip.py: _MODELS)."""
    assert clip_checkpoint.OPENAI_URL.format(
        sha256=clip_checkpoint.OPENAI_RELEASES['ViT-B-16.pt'], name='ViT-B-16.pt') == (
        'https://openaipublic.azureedge.net/clip/models/'
        '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt')


def test_hash_is_read_in_chunks(tmp_path, monkeypatch):
    """A file of several chunks hashes as hashlib does on the whole of it, read one chunk
    at a time."""
    data = bytes(range(256)) * 1000
    path = tmp_path / 'f.bin'
    path.write_bytes(data)
    monkeypatch.setattr(clip_checkpoint, 'HASH_CHUNK', 4096)
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, n):
            reads.append(n)
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr('builtins.open', lambda p, mode='r', *a: Spy(real_open(p, mode, *a)))
    got = clip_checkpoint.sha256_of(str(path))
    monkeypatch.undo()
    assert got == hashlib.sha256(data).hexdigest()
    assert len(reads) == len(data) // 4096 + 2 and set(reads) == {4096}  # last: b'' at the end


def test_model_config_reads_hf_weights_for_both_encoders(tiny_clip, tmp_path):
    """A model config's `pretrained` (image encoder) and `pretrained_text` (text encoder) take
    Hugging Face's file as they take OpenAI's archive: the built models hold the same CLIP
    weights."""
    from tests.tiny import build, tiny_model_cfg
    hf = write(to_hugging_face(tiny_clip[2]), str(tmp_path / 'model.safetensors'))
    torch.manual_seed(0)
    a = build(tiny_model_cfg(pretrained=hf, pretrained_text=hf)).state_dict()
    torch.manual_seed(0)
    b = build(tiny_model_cfg(pretrained=tiny_clip[0], pretrained_text=tiny_clip[0])).state_dict()
    assert a.keys() == b.keys()
    for k in a:  # the CLIP weights, and the rest from the same seed
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(a['text_encoder.text_projection'], tiny_clip[2]['text_projection'])
    assert torch.equal(a['backbone.proj'], tiny_clip[2]['visual.proj'])
