"""The project's one class-list parser: CSV quoting, blank lines skipped, empty names refused."""
import pytest

from cascade_clip.utils.vocabulary_names import parse_class_list


@pytest.mark.parametrize('text,names', [
    ('cat, sofa,window', ['cat', 'sofa', 'window']),
    ('cat\n\nsofa\n  window  \n', ['cat', 'sofa', 'window']),
    ('"table, wooden", cat\nsky', ['table, wooden', 'cat', 'sky']),
    ('road\r\nsky\r\n', ['road', 'sky']),  # a file written on Windows
    (' , \nsky', ['sky']),  # a line of nothing but separators is blank
])
def test_names_from_commas_lines_and_quotes(text, names):
    assert parse_class_list(text) == names


@pytest.mark.parametrize('text,message', [
    ('cat,,dog,', r'class name\(s\) number 2, 4 of 4 are empty \(two commas in a row or a trailing comma\?\)'),
    ('cat, sofa,window,', r'class name\(s\) number 4 of 4 are empty'),
    ('road\nsky,,tree', r'class name\(s\) number 3 of 4 are empty'),  # counted over the lines
    ('', 'the class list is empty: type at least one class name, separated by commas or one per line'),
    ('  \n \n', 'the class list is empty'),
    (None, 'the class list is empty'),
    ('cat, "sofa', r'could not be read as comma-separated values \(.*\); close every opening double quote'),
    # the closing quote is followed by the comma or the end of the line (csv's strict mode)
    ('dog, "ice cream, vanilla" ,cat', r'values \(\',\' expected after \'"\'\); close every opening '
     r'double quote, and put the comma right after the closing one'),
])
def test_refused_lists_name_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_class_list(text)


def test_a_class_file_is_read_with_the_same_rule(tmp_path):
    from cascade_clip.utils.vocabulary_names import read_class_file
    f = tmp_path / 'classes.txt'
    f.write_bytes(b'grass\r\n\r\n"table, wooden"\r\nsky\r\n')
    assert read_class_file(str(f)) == ['grass', 'table, wooden', 'sky']
    f.write_text('grass\nsky,\n')
    with pytest.raises(ValueError, match=f'{f}: class name\\(s\\) number 3 of 3 are empty'):
        read_class_file(str(f))
    with pytest.raises(FileNotFoundError, match=f'class file not found: {tmp_path}/nope.txt'):
        read_class_file(str(tmp_path / 'nope.txt'))


def test_class_ids_by_name():
    from cascade_clip.utils.vocabulary_names import class_ids
    classes = ['grass', 'tree', 'sky', 'road', 'car']
    assert class_ids(classes, ['car', ' Road ']) == [4, 3]
    with pytest.raises(ValueError, match=r"^'carr', 'bus': not among the 5 classes \(grass, tree, sky, "
                       r"road, car\)$"):
        class_ids(classes, ['carr', 'sky', 'bus'])
    with pytest.raises(ValueError, match=r'not among the 13 classes \(c0, c1, .*, c11, \.\.\.\)'):
        class_ids([f'c{i}' for i in range(13)], ['x'])
