"""cascade_clip.utils.files: text files read as UTF-8, declared sizes checked against what a
file holds, a reader's failure naming the file."""
import numpy as np
import pytest
import scipy.io

from cascade_clip.utils.files import check_declared_size, read_named, read_text


def test_read_text_removes_the_byte_order_mark_and_reads_line_ends(tmp_path):
    f = tmp_path / 'names.txt'
    f.write_bytes(b'\xef\xbb\xbfcaf\xc3\xa9\r\nroad\rsky\n')
    assert read_text(str(f), 'class file') == 'café\nroad\nsky\n'
    f.write_bytes(b'road\xef\xbb\xbf\n')  # a mark inside the text is text
    assert read_text(str(f), 'class file') == 'road\ufeff\n'


@pytest.mark.parametrize('data,offset,line,byte,reason', [
    ('caf\xe9'.encode('latin-1'), 3, 1, 0xe9, 'unexpected end of data'),
    (b'\xef\xbb\xbfsky\nroad\n\x96 dash\n', 12, 3, 0x96, 'invalid start byte'),
])
def test_read_text_names_the_file_offset_and_line(tmp_path, data, offset, line, byte, reason):
    f = tmp_path / 'split.txt'
    f.write_bytes(data)
    with pytest.raises(ValueError) as e:
        read_text(str(f), 'split file')
    assert str(e.value).startswith(f'split file {f} is not UTF-8 text: byte {offset} (line '
                                   f'{line}) is 0x{byte:02x} ({reason}). Save it as UTF-8')
    assert 'iconv -f WINDOWS-1252 -t UTF-8' in str(e.value)


def test_read_text_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f'class file not found: {tmp_path}/x.txt'):
        read_text(str(tmp_path / 'x.txt'), 'class file')


def test_check_declared_size_exact_and_at_most():
    check_declared_size('f', 'its header', 10, 10)
    check_declared_size('f', 'its entry', 5, 10, at_most=True)
    with pytest.raises(ValueError, match='f: its header declares 5 bytes of data, but the file '
                       'holds 10: the file is damaged, truncated or forged'):
        check_declared_size('f', 'its header', 5, 10)
    with pytest.raises(ValueError, match='f: its entry declares 11 bytes of data, but the file '
                       'holds at most 10'):
        check_declared_size('f', 'its entry', 11, 10, at_most=True)


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
