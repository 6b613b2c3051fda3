import copy

import numpy as np
import pytest
import torch
from mmcv.runner import load_checkpoint, save_checkpoint
from mmcv.utils import ConfigDict

from cascade_clip.clip import MULTI_TEMPLATES, tokenize
from cascade_clip.utils import safe_load
from tests.tiny import NAMES, NOVEL, build, tiny_model_cfg, train_loss


def meta(h=64, w=64, flip=False):
    return dict(ori_shape=(h, w, 3), img_shape=(h, w, 3), pad_shape=(h, w, 3), flip=flip,
                flip_direction='horizontal', scale_factor=1.0)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return build(tiny_model_cfg())


def test_train_forward_shapes_and_losses(model):
    model.train()
    torch.manual_seed(0)
    img = torch.randn(2, 3, 64, 64)
    gt = torch.randint(0, 6, (2, 1, 64, 64))
    losses = model.forward_train(img, [meta(), meta()], gt)
    assert set(losses) == {'decode.loss_mask', 'decode.loss_dice', 'decode.acc_seg'}
    assert losses['decode.loss_mask'].unit == losses['decode.loss_dice'].unit == 'masks'
    assert all(torch.isfinite(getattr(v, 'value', v)).all() for v in losses.values())
    model.eval()
    with torch.no_grad():
        x = model.extract_feat(img)
        scores = model.encode_decode(img, [meta(), meta()])
    assert len(x.levels) == 6 and x.levels[0].shape == (2, 32, 4, 4)
    assert x.dense.shape == (2, 32, 4, 4) and x.global_emb.shape == (2, 32)
    assert scores.shape == (2, 6, 64, 64) and torch.isfinite(scores).all()


def test_gradients_reach_exactly_the_trainable_parameters():
    torch.manual_seed(0)
    model = build(tiny_model_cfg())
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    backbone_trainable = {n for n in trainable if n.startswith('backbone.')}
    assert backbone_trainable == {
        'backbone.prompt_embeddings', 'backbone.deep_prompt_embeddings', 'backbone.prompt_proj.weight',
        'backbone.prompt_proj.bias', 'backbone.prompt_norm.weight', 'backbone.prompt_norm.bias'}
    assert not any(n.startswith('text_encoder.') for n in trainable)
    # 212 published "trainable" tensors minus the 90 the forward never uses
    assert len(trainable) == 212 - 90
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                            weight_decay=0.01)
    img = torch.randn(2, 3, 64, 64)
    gt = torch.randint(0, 6, (2, 1, 64, 64))
    train_loss(model, img, [meta(), meta()], gt).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
            assert torch.isfinite(p.grad).all(), n
        else:
            assert p.grad is None, n
    opt.step()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]), n


def test_ft_backbone_and_exclude_key_list():
    m = build(tiny_model_cfg(ft_backbone=True))
    assert all(p.requires_grad for p in m.backbone.parameters())
    assert not any(p.requires_grad for p in m.text_encoder.parameters())
    m = build(tiny_model_cfg(exclude_key=['prompt', 'ln_layers']))
    got = {n for n, p in m.backbone.named_parameters() if p.requires_grad}
    assert 'ln_layers.0.weight' in got and 'proj_layers' not in got and 'prompt_proj.bias' in got


def test_inductive_label_remap(model):
    gt = torch.tensor([[[[0, 1, 2], [3, 4, 5], [255, 0, 5]]]])
    # base [0, 1, 3, 4] -> 0..3; novel 2, 5 -> ignored
    assert model.remap_labels(gt).tolist() == [[[[0, 1, 255], [2, 3, 255], [255, 0, 255]]]]
    with pytest.raises(ValueError, match=r'\[6\]'):
        model.remap_labels(torch.tensor([[[[6]]]]))


def test_transductive_remap_and_pseudo_labels():
    torch.manual_seed(0)
    model = build(tiny_model_cfg(self_training=True))
    gt = torch.tensor([[[[0, 1, 2], [3, 4, 5], [255, 0, 5]]]])
    assert model.remap_labels(gt).tolist() == [[[[0, 1, -1], [3, 4, -1], [255, 0, -1]]]]
    assert model.decode_head.self_training
    # the head is trained on all classes and fills -1 pixels with the best unseen class
    model.train()
    seen = {}
    orig = model.decode_head.losses

    def spy(pred, label, *args):
        seen['pred'], seen['label'] = pred, label
        return orig(pred, label, *args)

    model.decode_head.losses = spy
    img = torch.randn(1, 3, 64, 64)
    gt = torch.randint(0, 6, (1, 1, 64, 64))
    model.forward_train(img, [meta()], gt)
    pred, label = seen['pred'], seen['label']
    assert pred.shape[1] == 6
    unseen_px = (gt == 2) | (gt == 5)
    # the loss gets the decoders' (4x4) logits; pseudo-labels come from them upsampled
    up = torch.nn.functional.interpolate(pred.detach(), size=(64, 64), mode='bilinear',
                                         align_corners=False)
    best = torch.tensor(NOVEL)[up[:, NOVEL].argmax(1, keepdim=True)]
    assert torch.equal(label[unseen_px], best[unseen_px])
    assert torch.equal(label[~unseen_px], gt[~unseen_px])


def test_slide_inference_equals_stitching_by_hand(model):
    model.eval()
    torch.manual_seed(0)
    img = torch.randn(1, 3, 64, 112)
    m = copy.deepcopy(model)
    m.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(48, 48), crop_batch=4)
    with torch.no_grad():
        got = m.slide_inference(img, [meta(64, 112)], rescale=True)
        m.test_cfg['crop_batch'] = 1
        got1 = m.slide_inference(img, [meta(64, 112)], rescale=True)
        total = torch.zeros(1, 6, 64, 112)
        count = torch.zeros(1, 1, 64, 112)
        for x1 in (0, 48):  # x grid: 0..64, 48..112
            total[..., x1:x1 + 64] += m.encode_decode(img[..., x1:x1 + 64], [meta()])
            count[..., x1:x1 + 64] += 1
    assert got.shape == (1, 6, 64, 112)
    torch.testing.assert_close(got, total / count, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, got1, atol=1e-5, rtol=1e-5)


def test_simple_test_aug_test_and_forward_test(model):
    model.eval()
    torch.manual_seed(0)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(img=[img], img_metas=[[meta()]], return_loss=False)
        scores = model.encode_decode(img, [meta()])
        aug = model(img=[img, img.flip(-1)], img_metas=[[meta()], [meta(flip=True)]],
                    return_loss=False)
    assert isinstance(out, list) and out[0].shape == (64, 64)
    assert np.array_equal(out[0], scores.argmax(1)[0].numpy())
    assert aug[0].shape == (64, 64)
    assert set(np.unique(out[0])) <= set(range(6))


def test_text_embeddings_computed_once_and_multi_template(model):
    calls = []
    m = build(tiny_model_cfg())
    h = m.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    m.eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        m.encode_decode(img, [meta()])
        m.encode_decode(img, [meta()])
    assert len(calls) == 1
    h.remove()
    with torch.no_grad():
        f = m.text_encoder(tokenize([f'a photo of a {n}' for n in NAMES]))
    torch.testing.assert_close(m.vocabulary.embeddings, f / f.norm(dim=-1, keepdim=True))
    mm = build(tiny_model_cfg(multi_prompts=True))
    with torch.no_grad():
        emb = mm.class_embeddings()
        per_t = []
        for t in MULTI_TEMPLATES:
            f = mm.text_encoder(tokenize([t.format(n) for n in NAMES]))
            per_t.append(f / f.norm(dim=-1, keepdim=True))
        ref = torch.stack(per_t).mean(0)
        ref = ref / ref.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(emb, ref, atol=1e-6, rtol=1e-5)


def test_text_embeddings_from_file_and_errors(tmp_path):
    emb = np.random.RandomState(0).randn(6, 32).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    path = tmp_path / 'emb.npy'
    np.save(path, emb)
    m = build(tiny_model_cfg(load_text_embedding=str(path)))
    assert np.allclose(m.class_embeddings().numpy(), emb)
    np.save(tmp_path / 'rows.npy', emb[:5])
    with pytest.raises(ValueError, match=r'rows.npy have shape \(5, 32\), expected \(6, 32\)'):
        build(tiny_model_cfg(load_text_embedding=str(tmp_path / 'rows.npy')))
    np.save(tmp_path / 'width.npy', np.zeros((6, 16), np.float32))
    with pytest.raises(ValueError, match='width.npy have width 16, but the model expects 32'):
        build(tiny_model_cfg(load_text_embedding=str(tmp_path / 'width.npy')))
    with pytest.raises(FileNotFoundError, match='missing.npy.*build_text_embeddings.py'):
        build(tiny_model_cfg(load_text_embedding=str(tmp_path / 'missing.npy')))


@pytest.mark.parametrize('base,novel,msg', [
    ([0, 1, 2, 3], [3, 4, 5], r'must split the classes 0..5: ids \[3\] are in both'),
    ([0, 1, 3, 4], [2, 7], r'novel_class \[2, 7\] has ids outside 0..5 \[7\] or twice'),
    ([0, 1, 3], [2, 5], r'ids \[4\] are in neither'),
])
def test_class_split_errors(base, novel, msg):
    cfg = tiny_model_cfg()
    cfg.update(base_class=base, novel_class=novel)
    cfg['decode_head']['seen_idx'] = base
    with pytest.raises(ValueError, match=msg):
        build(cfg)


def test_out_indices_must_match_cascade_layout():
    cfg = tiny_model_cfg()
    cfg['backbone']['out_indices'] = [6, 7, 8, 9, 10]
    with pytest.raises(ValueError, match=r'reads level 5, but the backbone returns 5 levels '
                       r'\(out_indices \[6, 7, 8, 9, 10\]\)'):
        build(cfg)
    cfg['decode_head']['cascade_stages'] = [[0, 1, 2], [3, 4, 5], [6]]  # the old "6 = last layer"
    cfg['backbone']['out_indices'] = [5, 6, 7, 8, 9, 10]
    with pytest.raises(ValueError, match='reads level 6, .* -1 is the last layer'):
        build(cfg)
    cfg['decode_head']['cascade_stages'] = [[-1]]  # one-stage ZegCLIP-style head: any count
    cfg['backbone']['out_indices'] = []
    build(cfg)


def published_keys(layers=12, n_levels=6, decoders=3, dec_layers=3, text_layers=2):
    """The state-dict key set of a published checkpoint, enumerated from the published modules."""
    keys = ['backbone.' + k for k in ['conv1.weight', 'class_embedding', 'positional_embedding',
                                       'ln_pre.weight', 'ln_pre.bias', 'ln_post.weight', 'ln_post.bias',
                                       'proj', 'proj_layers', 'prompt_embeddings',
                                       'deep_prompt_embeddings', 'prompt_proj.weight',
                                       'prompt_proj.bias', 'prompt_norm.weight', 'prompt_norm.bias']]
    block = ['attn.in_proj_weight', 'attn.in_proj_bias', 'attn.out_proj.weight', 'attn.out_proj.bias',
             'ln_1.weight', 'ln_1.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight',
             'mlp.c_proj.bias', 'ln_2.weight', 'ln_2.bias']
    keys += [f'backbone.transformer.resblocks.{i}.{b}' for i in range(layers) for b in block]
    keys += [f'backbone.ln_layers.{k}.{p}' for k in range(n_levels) for p in ('weight', 'bias')]
    keys += [f'text_encoder.transformer.resblocks.{i}.{b}' for i in range(text_layers) for b in block]
    keys += ['text_encoder.' + k for k in ['token_embedding.weight', 'positional_embedding',
                                           'ln_final.weight', 'ln_final.bias', 'text_projection']]
    layer = ['self_attn.in_proj_weight', 'self_attn.in_proj_bias', 'self_attn.out_proj.weight',
             'self_attn.out_proj.bias'] + [f'multihead_attn.{m}.{p}' for m in 'q k v proj'.split()
                                           for p in ('weight', 'bias')]
    layer += [f'{m}.{p}' for m in ('linear1', 'linear2', 'norm1', 'norm2', 'norm3') for p in ('weight', 'bias')]
    keys += [f'decode_head.cascade_decoders.{j}.layers.{l}.{k}' for j in range(decoders)
             for l in range(dec_layers) for k in layer]
    keys += [f'decode_head.q_projs.{j}.{p}' for j in range(decoders) for p in ('weight', 'bias')]
    keys += ['decode_head.weights_s1', 'decode_head.weights_s2',
             'decode_head.loss_decode.criterion.empty_weight']
    return set(keys)


def test_published_key_set_and_checkpoint_round_trip(tmp_path, model):
    assert set(model.state_dict()) == published_keys()
    model.eval()
    ckpt = str(tmp_path / 'iter_1.pth')
    save_checkpoint(model, ckpt, meta=dict(CLASSES=NAMES, PALETTE=None))
    raw = safe_load(ckpt)
    assert set(raw) >= {'state_dict', 'meta'}
    torch.manual_seed(123)
    fresh = build(tiny_model_cfg())
    fresh.eval()
    load_checkpoint(fresh, ckpt, map_location='cpu', strict=True)
    fresh.load_state_dict(raw['state_dict'], strict=True)
    img = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        a = model.encode_decode(img, [meta(64, 80)])
        b = fresh.encode_decode(img, [meta(64, 80)])
    assert torch.equal(a, b)


def test_train_a_few_steps_loss_decreases():
    torch.manual_seed(0)
    model = build(tiny_model_cfg())
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    img = torch.randn(2, 3, 64, 64)
    gt = torch.zeros(2, 1, 64, 64, dtype=torch.long)
    gt[:, :, 32:] = 3
    gt[:, :, :, :20] = 1
    totals = []
    for _ in range(10):
        loss = train_loss(model, img, [meta(), meta()], gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < 0.7 * totals[0] and min(totals[5:]) < min(totals[:3]), totals


def test_bf16_autocast_close_to_fp32_and_trains():
    torch.manual_seed(0)
    model = build(tiny_model_cfg())
    model.eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.encode_decode(img, [meta()])
        model.set_precision('bf16')
        out = model.encode_decode(img, [meta()])
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"amp_dtype must be one of None, \"fp32\", \"bf16\", \"fp16\"; got 'bf61'"):
        model.set_precision('bf61')
    assert (out - ref).abs().max() < 0.05  # sigmoid scores
    model.train()
    loss = train_loss(model, torch.randn(2, 3, 64, 64), [meta(), meta()],
                      torch.randint(0, 6, (2, 1, 64, 64)))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match='amp_dtype'):
        build(tiny_model_cfg(amp_dtype='int8'))
