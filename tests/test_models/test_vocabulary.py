import pytest
import torch

from cascade_clip.models.vocabulary import Vocabulary


def test_label_maps_by_hand():
    v = Vocabulary(['cat', 'dog', 'cow', 'tree'], seen=[0, 3, 1])
    assert v.seen == (0, 1, 3) and v.unseen == (2, ) and v.zero_shot
    ind = v.label_map(transductive=False)
    # seen ids -> their rank among the seen classes, unseen -> ignored, the rest ignored
    assert ind[:5].tolist() == [0, 1, 255, 2, 255] and ind[255] == 255
    trans = v.label_map(transductive=True)
    assert trans[:5].tolist() == [0, 1, -1, 3, 255]
    plain = Vocabulary(['a', 'b']).label_map(transductive=False)
    assert plain[:3].tolist() == [0, 1, 255] and not Vocabulary(['a', 'b']).zero_shot


@pytest.mark.parametrize('kwargs,msg', [
    (dict(names=[]), 'class list is empty'),
    (dict(names=['a', ' ']), r'positions \[1\] are empty'),
    (dict(names=['Sky', 'sky']), r"'Sky' \(position 0\) and 'sky' \(position 1\) are the same class"),
    (dict(names=['a', 'b'], seen=[2]), r'seen class ids \[2\] are outside the 2 classes'),
    (dict(names=['a', 'b'], seen=[0, 0]), 'list some ids twice'),
    (dict(names=['a', 'b'], embeddings=torch.ones(3, 4)), r'shape \(3, 4\), expected \(2, D\)'),
    (dict(names=['a', 'b'], embeddings=torch.tensor([[1., 0.], [float('inf'), 0.]])),
     r"row 1 \(class 'b'\) is not finite"),
    (dict(names=['a', 'b'], embeddings=torch.tensor([[0., 0.], [1., 0.]])), r"row 0 \(class 'a'\) is all zeros"),
])
def test_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Vocabulary(**kwargs)


def test_names_are_cleaned_and_embeddings_float32():
    v = Vocabulary([' red  flat', 'blue\tdots '], embeddings=torch.ones(2, 3, dtype=torch.float64))
    assert v.names == ('red flat', 'blue dots')
    assert v.embeddings.dtype == torch.float32 and len(v) == 2 and len(v.palette) == 2
