import pytest
import torch

from cascade_clip import tokenize


def ids(row):
    row = row.tolist()
    return row[:row.index(49407) + 1]


def test_known_ids():
    t = tokenize(['a photo of a cat', 'a photo of a traffic light.', 'wall-concrete'])
    assert t.shape == (3, 77) and t.dtype == torch.long
    assert ids(t[0]) == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ids(t[1]) == [49406, 320, 1125, 539, 320, 3399, 1395, 269, 49407]
    assert ids(t[2]) == [49406, 2569, 268, 9637, 49407]


def test_padding_with_zeros_and_context_length():
    t = tokenize('a photo of a cat', context_length=10)
    assert t.shape == (1, 10)
    assert t[0, 7:].tolist() == [0, 0, 0]


def test_too_long_raises_unless_truncate():
    text = ' '.join(['cat'] * 100)
    with pytest.raises(ValueError, match='context length 77'):
        tokenize(text)
    t = tokenize(text, truncate=True)
    assert t.shape == (1, 77)
    assert t[0, 0] == 49406 and t[0, -1] == 49407
    assert (t[0, 1:-1] == 2368).all()


def test_cleaning_case_whitespace_and_ftfy():
    ref = tokenize('a photo of a cat')
    assert torch.equal(tokenize('  A   Photo\n of\ta  CAT  '), ref)
    # ftfy repairs mojibake and html entities are unescaped
    assert torch.equal(tokenize('caf\u00c3\u00a9'), tokenize('café'))
    assert torch.equal(tokenize('cat &amp; dog'), tokenize('cat & dog'))
