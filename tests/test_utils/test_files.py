"""cascade_clip.utils.files.read_named: a reader's failure names the file it was reading."""
import numpy as np
import pytest
import scipy.io

from cascade_clip.utils.files import read_named


def test_read_named_names_the_file_a_reader_fails_on(tmp_path):
    good, empty = tmp_path / 'good.mat', tmp_path / 'empty.mat'
    scipy.io.savemat(str(good), {'LabelMap': np.eye(2, dtype=np.uint16)})
    empty.write_bytes(b'')
    assert np.array_equal(read_named(str(good), scipy.io.loadmat)['LabelMap'], np.eye(2))
    with pytest.raises(ValueError) as e:
        read_named(str(empty), scipy.io.loadmat)
    # scipy's own message ("Empty file ...?") is kept, behind the file's name
    assert str(e.value).startswith(f'could not read {empty} (')
    assert str(e.value).endswith('): is the file damaged, truncated or empty?')
    assert isinstance(e.value.__cause__, Exception) and str(e.value.__cause__) in str(e.value)
