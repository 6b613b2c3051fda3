"""Image files in and out: what a folder or a glob yields, outputs that would replace an input,
label maps only as PNG (8-bit, 16-bit above 256 classes), writes whole or not at all."""
import os

import cv2
import numpy as np
import pytest

from cascade_clip.utils import image_files
from cascade_clip.utils.image_files import (check_image_name, check_label_map_name,
                                            check_outputs_spare_inputs, find_images, write_image,
                                            write_label_map)


@pytest.fixture
def photos(tmp_path):
    """A folder of images at three depths, with a text file and hidden entries beside them."""
    d = tmp_path / 'photos'
    for name in ('a.jpg', 'b.PNG', 'notes.txt', 'sub/c.jpeg', 'sub/f.jpg', 'sub/deep/e.webp',
                 '.hidden/x.jpg', '.y.jpg', 'sub/.z.png'):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(b'x')
    return d


def test_a_folder_yields_its_images_at_any_depth(photos):
    root, names = find_images(str(photos))
    assert root == str(photos)
    assert names == ['a.jpg', 'b.PNG', 'sub/c.jpeg', 'sub/deep/e.webp', 'sub/f.jpg']


def test_a_glob_yields_its_images_below_its_leading_folders(photos, monkeypatch):
    assert find_images(f'{photos}/**/*.jpg') == (str(photos), ['a.jpg', 'sub/f.jpg'])
    assert find_images(f'{photos}/sub/*') == (str(photos / 'sub'), ['c.jpeg', 'f.jpg'])
    assert find_images(f'{photos}/s?b/**/*.*') == (str(photos), ['sub/c.jpeg', 'sub/deep/e.webp', 'sub/f.jpg'])
    monkeypatch.chdir(photos)
    assert find_images('*.jpg') == ('.', ['a.jpg'])


def test_a_file_is_taken_whatever_its_name(photos):
    assert find_images(str(photos / 'notes.txt')) == (str(photos), ['notes.txt'])


def test_nothing_to_segment_is_an_error_naming_the_input(tmp_path, photos):
    with pytest.raises(FileNotFoundError, match=r'nope: no such file or folder \(expected an image '
                       r'file, a folder of images or a glob pattern'):
        find_images(str(tmp_path / 'nope'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'no images \(.bmp, .jpeg, .jpg, .png, .tif, .tiff, '
                       r'.webp\) in the folder .*empty \(nor in its sub-folders\)'):
        find_images(str(tmp_path / 'empty'))
    with pytest.raises(FileNotFoundError, match=r"no images .* in the files matching '.*photos/\*.gif'"):
        find_images(f'{photos}/*.gif')


def test_an_output_over_an_input_is_refused(tmp_path, photos):
    a = str(photos / 'a.jpg')
    with pytest.raises(ValueError, match=r'the overlay of .*a.jpg would be written to .*a.jpg, over '
                       r'the input image .*photos/a.jpg: refused, nothing was written'):
        check_outputs_spare_inputs([a], [(a, f'overlay of {a}')])
    # the same file by another path: a link to the folder, and a detour through ".."
    os.symlink(photos, tmp_path / 'link')
    for other in (str(tmp_path / 'link/a.jpg'), str(photos / 'sub/../a.jpg')):
        with pytest.raises(ValueError, match='over the input image'):
            check_outputs_spare_inputs([a], [(other, 'label map of x')])
    # a link in the output folder that points at an input: replacing it would lose the link
    out = tmp_path / 'out'
    out.mkdir()
    os.symlink(photos / 'a.jpg', out / 'a.png')
    with pytest.raises(ValueError, match=r'the overlay would be written to .*out/a.png, over the input'):
        check_outputs_spare_inputs([a], [(str(out / 'a.png'), 'overlay')])
    check_outputs_spare_inputs([a], [(str(out / 'b.png'), 'overlay'), (str(photos / 'a.png'), 'overlay')])


def test_two_outputs_of_one_name_are_refused(photos):
    """photos/a.jpg and photos/a.png would both give a.png; so would an overlay folder that is
    also the label-map folder."""
    a, b = str(photos / 'a.jpg'), str(photos / 'b.PNG')
    with pytest.raises(ValueError, match=r'the overlay of .*b.PNG would be written to out/x.png, over '
                       r'the overlay of .*a.jpg'):
        check_outputs_spare_inputs([a, b], [('out/x.png', f'overlay of {a}'), ('out/x.png', f'overlay of {b}')])


def test_label_maps_only_as_png():
    for name in ('labels.png', 'out/Labels.PNG'):
        check_label_map_name(name, '--out-mask')
    with pytest.raises(ValueError, match=r'--out-mask labels.jpg: label maps are written only as PNG '
                       r'\(lossless; a .jpg would not keep the class ids\); expected a name ending in .png'):
        check_label_map_name('labels.jpg', '--out-mask')
    with pytest.raises(ValueError, match='a name without extension would not keep'):
        check_label_map_name('labels', '--out-mask')
    check_image_name('overlay.jpg', '--out')
    with pytest.raises(ValueError, match=r'--out overlay.pdf: not an image name OpenCV can write'):
        check_image_name('overlay.pdf', '--out')


@pytest.mark.parametrize('num_classes,dtype', [(256, np.uint8), (257, np.uint16)])
def test_label_map_round_trip(tmp_path, num_classes, dtype):
    labels = np.arange(12 * 30).reshape(12, 30) % num_classes
    labels[0, 0] = num_classes - 1
    path = str(tmp_path / 'sub' / 'labels.png')
    write_label_map(path, labels, num_classes)
    back = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert back.dtype == dtype and np.array_equal(back, labels)
    assert os.listdir(tmp_path / 'sub') == ['labels.png']


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(path, img):
        open(path, 'wb').write(b'half a PNG')
        return False

    monkeypatch.setattr(image_files.cv2, 'imwrite', broken)
    path = tmp_path / 'overlay.png'
    with pytest.raises(OSError, match=r'could not write .*overlay.png: OpenCV could not write a uint8 '
                       r'\(4, 4, 3\) image there'):
        write_image(str(path), np.zeros((4, 4, 3), np.uint8))
    assert os.listdir(tmp_path) == []
