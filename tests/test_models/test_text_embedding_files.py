"""Text-embedding files: unit rows used as they are, rows further than 1e-2 from unit length
L2-normalised (a warning names the file), and a file that is not a plain numeric .npy array,
or whose header does not fit its size, refused naming the file."""
import logging

import numpy as np
import pytest
import torch

from tests.tiny import build, tiny_model_cfg


def rows(seed=0):
    emb = np.random.RandomState(seed).randn(6, 32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_rows_not_unit_length_are_normalised_with_a_warning(tmp_path, caplog):
    unit = rows()
    scaled = unit * np.array([[3.0], [1.0], [0.5], [1.0], [7.0], [1.0]])
    path = tmp_path / 'scaled.npy'
    np.save(path, scaled.astype(np.float32))
    with caplog.at_level(logging.WARNING):
        model = build(tiny_model_cfg(load_text_embedding=str(path)))
    assert f'text embeddings in {path}: 3 of 6 rows are not unit length (row 0 has norm 3)' in caplog.text
    np.testing.assert_allclose(model.class_embeddings().numpy(), unit, atol=1e-6)
    # the scores are those of the normalised file
    unit_path = tmp_path / 'unit.npy'
    np.save(unit_path, unit.astype(np.float32))
    torch.manual_seed(0)
    a = build(tiny_model_cfg(load_text_embedding=str(path))).eval()
    torch.manual_seed(0)
    b = build(tiny_model_cfg(load_text_embedding=str(unit_path))).eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a.encode_decode(img, None), b.encode_decode(img, None))


def test_float16_files_as_published_are_used_as_they_are(tmp_path, caplog):
    """The published code uses its float16 rows as they are: so does the model (no warning)."""
    half = rows(1).astype(np.float16)
    norms = np.linalg.norm(half.astype(np.float64), axis=1)
    assert np.abs(norms - 1).max() > 1e-5  # float16 rounding leaves rows slightly off unit
    path = tmp_path / 'published.npy'
    np.save(path, half)
    with caplog.at_level(logging.WARNING):
        model = build(tiny_model_cfg(load_text_embedding=str(path)))
    assert 'not unit length' not in caplog.text
    assert np.array_equal(model.class_embeddings().numpy(), half.astype(np.float32))


def test_only_rows_far_from_unit_length_are_normalised(tmp_path, caplog):
    unit = rows(3).astype(np.float32)
    mixed = unit.copy()
    mixed[1] *= 1.005  # within 1e-2: as it is
    mixed[4] *= 1.5  # further: normalised
    path = tmp_path / 'mixed.npy'
    np.save(path, mixed)
    with caplog.at_level(logging.WARNING):
        got = build(tiny_model_cfg(load_text_embedding=str(path))).class_embeddings().numpy()
    assert f'text embeddings in {path}: 1 of 6 rows are not unit length (row 4 has norm 1.5)' in caplog.text
    assert np.array_equal(got[[0, 1, 2, 3, 5]], mixed[[0, 1, 2, 3, 5]])
    np.testing.assert_allclose(got[4], unit[4], atol=1e-6)


def test_a_header_claiming_more_data_than_the_file_holds(tmp_path):
    """A 200-byte .npy whose header declares (6, 10**9) floats is refused before reading."""
    path = tmp_path / 'forged.npy'
    np.save(path, np.ones((6, 32), np.float32))
    data = path.read_bytes()
    head = data[:data.index(b'\n') + 1].replace(b'(6, 32)', b'(6, 1000000000)')
    path.write_bytes(head + b'\0' * 64)
    with pytest.raises(ValueError, match=rf'{path}: its header \(a \(6, 1000000000\) float32 array\) '
                       r'declares 24000000000 bytes of data, but the file holds 72'):
        build(tiny_model_cfg(load_text_embedding=str(path)))


def test_set_vocabulary_normalises_given_embeddings():
    model = build(tiny_model_cfg())
    emb = torch.from_numpy(rows(2)[:3]).float() * 4
    model.set_vocabulary(['cat', 'dog', 'cow'], embeddings=emb)
    torch.testing.assert_close(model.class_embeddings(), emb / 4)


def _object_array(path):
    np.save(path, np.array([{'a': 1}] * 6, dtype=object), allow_pickle=True)


def _text_file(path):
    path.write_text('0.1 0.2 0.3\n')


def _npz(path):
    with open(path, 'wb') as f:
        np.savez(f, a=rows())


@pytest.mark.parametrize('write,message', [
    (_object_array, r'bad.npy holds a object array \(objects would be unpickled\): expected text '
                    r'embeddings \(6, 32\)'),
    (_text_file, r'bad.npy is not a plain .npy array \(.*\); expected text embeddings \(6, 32\)'),
    (_npz, r'bad.npy is an .npz archive \(a zip of arrays\); expected text embeddings \(6, 32\)'),
    (lambda p: np.save(p, np.ones((6, 32), np.int64)),
     r'text embeddings in .*bad.npy have dtype int64, expected a floating-point \(K, D\) array'),
    (lambda p: np.save(p, np.array(['cat'] * 6)), r'bad.npy holds a <U3 array'),
    (lambda p: np.save(p, np.ones(6, np.float32)), r'bad.npy have shape \(6,\), expected \(6, 32\)'),
    (lambda p: np.save(p, np.ones((6, 32, 1), np.float32)), r'bad.npy have shape \(6, 32, 1\), expected \(6, 32\)'),
])
def test_files_that_are_not_plain_numeric_arrays(tmp_path, write, message):
    path = tmp_path / 'bad.npy'
    write(path)
    with pytest.raises(ValueError, match=message):
        build(tiny_model_cfg(load_text_embedding=str(path)))
