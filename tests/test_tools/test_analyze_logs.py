"""tools/analyze_logs.py on json logs written here with known values: the curves drawn (data,
colours, the PNG's size), the time per iteration printed, and the named errors."""
import json
import logging
import os
import re

import cv2
import numpy as np
import pytest
from matplotlib.figure import Figure

from tools import analyze_logs

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# matplotlib's first two default colours (C0, C1) as BGR, how cv2 decodes them
BLUE, ORANGE = (180, 119, 31), (14, 127, 255)


def write_log(path, records, meta=True):
    lines = ([json.dumps({'env_info': 'sys.platform: linux', 'seed': 0})] if meta else [])
    path.write_text('\n'.join(lines + [json.dumps(r) for r in records]) + '\n')
    return str(path)


def train(it, loss, time):
    return {'mode': 'train', 'epoch': 1, 'iter': it, 'lr': 0.01, 'loss': loss,
            'decode.loss_mask': loss / 2, 'time': time}


def val(it, miou):
    return {'mode': 'val', 'epoch': 1, 'iter': it, 'lr': 0.01, 'aAcc': 0.9, 'mIoU': miou}


@pytest.fixture
def runs(tmp_path):
    """Run A as this project logs it (validation lines at the iteration evaluated), run B as
    MMSeg logs it (validation lines with 'iter' = 5 validation batches), both evaluated after
    iterations 20 and 40. A's times after its first line: 0.2, 0.4, 0.3 (mean 0.3); B's: 0.5,
    0.7, 0.6 (mean 0.6)."""
    a = write_log(tmp_path / 'a.log.json', [train(10, 4.0, 1.0), train(20, 3.0, 0.2), val(20, 0.25),
                                            train(30, 2.0, 0.4), train(40, 1.0, 0.3), val(40, 0.5)])
    b = write_log(tmp_path / 'b.log.json', [train(10, 5.0, 2.0), train(20, 4.5, 0.5), val(5, 0.1),
                                            train(30, 4.0, 0.7), train(40, 3.5, 0.6), val(5, 0.2)])
    return a, b


def colour_pixels(image, bgr, tol=12):
    return int((np.abs(image.astype(int) - bgr).max(axis=2) <= tol).sum())


def test_two_runs_are_drawn_one_curve_per_run_and_key(runs, tmp_path, caplog):
    a, b = runs
    out = tmp_path / 'plots' / 'curves.png'
    with caplog.at_level(logging.WARNING):
        fig = analyze_logs.main([a, b, '--keys', 'loss', 'mIoU', '--legend', 'A loss', 'A mIoU',
                                 'B loss', 'B mIoU', '--title', 'two runs', '--out', str(out),
                                 '--size', '800', '600'])
    # a real PNG of the asked size, written alone (no temporary file left)
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (600, 800, 3)
    assert os.listdir(out.parent) == ['curves.png']
    # one panel per key; training keys at their iterations, validation keys where evaluated:
    # B's validation lines (MMSeg's count of batches) placed after the training line before them
    assert isinstance(fig, Figure) and fig.get_suptitle() == 'two runs'
    loss_ax, miou_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ['A loss', 'B loss']
    assert [list(line.get_xdata()) for line in loss_ax.lines] == [[10, 20, 30, 40]] * 2
    assert [list(line.get_ydata()) for line in loss_ax.lines] == [[4.0, 3.0, 2.0, 1.0], [5.0, 4.5, 4.0, 3.5]]
    assert [line.get_label() for line in miou_ax.lines] == ['A mIoU', 'B mIoU']
    assert [list(line.get_xdata()) for line in miou_ax.lines] == [[20, 40], [20, 40]]
    assert [list(line.get_ydata()) for line in miou_ax.lines] == [[0.25, 0.5], [0.1, 0.2]]
    assert [line.get_marker() for line in miou_ax.lines] == ['o', 'o']
    assert [line.get_color() for line in loss_ax.lines] == ['C0', 'C1']  # one colour per run
    assert loss_ax.get_ylabel() == 'loss' and miou_ax.get_xlabel() == 'iteration'
    # both runs' colours are drawn
    assert colour_pixels(image, BLUE) > 200 and colour_pixels(image, ORANGE) > 200
    assert f"{b}: its validation lines hold MMSeg's count of validation batches in 'iter'" in caplog.text
    assert str(a) not in caplog.text


def test_the_time_per_iteration_leaves_out_the_first_interval(runs, capsys):
    a, b = runs
    analyze_logs.main([a, b, '--keys', 'loss'])
    out = capsys.readouterr().out
    rows = {cells[0]: cells[1:] for line in out.splitlines() if line.startswith('| ')
            for cells in [[c.strip() for c in line.strip('|').split('|')]]}
    # (0.2 + 0.4 + 0.3) / 3 and (0.5 + 0.7 + 0.6) / 3
    assert rows[a] == ['0.3000', '0.4000 (30)', '0.2000 (20)', '3']
    assert rows[b] == ['0.6000', '0.7000 (30)', '0.5000 (20)', '3']


def test_a_log_of_one_training_line_has_no_time(tmp_path, capsys):
    log = write_log(tmp_path / 'one.log.json', [train(10, 1.0, 0.5), val(10, 0.3)])
    analyze_logs.main([log])
    assert f'| {log} |   -    |       -        |       -        | 0 (needs 2 timed training lines) |' \
        in capsys.readouterr().out


def test_evaluations_logged_at_their_iteration_are_placed_there(tmp_path, caplog):
    """Evaluation every 25 iterations, a training line every 10: the iteration in the
    validation line is used (the training line before it says 20)."""
    log = write_log(tmp_path / 'x.log.json', [train(10, 3.0, 1.0), train(20, 2.0, 1.0), val(25, 0.4),
                                              train(30, 1.0, 1.0), train(50, 1.0, 1.0), val(50, 0.6)])
    with caplog.at_level(logging.WARNING):
        loaded = analyze_logs.load_json_log(log)
    assert [r['iter'] for r in loaded.val] == [25, 50] and [r['mIoU'] for r in loaded.val] == [0.4, 0.6]
    assert [r['iter'] for r in loaded.train] == [10, 20, 30, 50]
    assert caplog.text == ''


def test_a_missing_key_names_the_log_and_the_keys_it_has(runs, tmp_path):
    a, _ = runs
    no_val = write_log(tmp_path / 'no_val.log.json', [train(10, 1.0, 0.5), train(20, 0.5, 0.5)])
    out = tmp_path / 'curves.png'
    with pytest.raises(SystemExit) as info:
        analyze_logs.main([a, no_val, '--keys', 'loss', 'mIoU', 'hIoU', '--out', str(out)])
    assert str(info.value) == (
        f"error: {a}: no key 'hIoU' (did you mean 'mIoU'?); its training lines have: decode.loss_mask, "
        f"epoch, loss, lr, time; its validation lines have: aAcc, epoch, lr, mIoU\n"
        f"{no_val}: no key 'mIoU', 'hIoU'; its training lines have: decode.loss_mask, epoch, loss, lr, "
        f"time; its validation lines have: (no validation line)")
    assert not out.exists()


@pytest.mark.parametrize('content,expected', [
    # the text log next to it
    ('2024-01-01 10:00:00,000 - mmseg - INFO - Iter [50/80000]\tlr: 1.0e-05, loss: 1.0\n',
     r"line 1 is not JSON \(Extra data\): expected MMCV's json log: one JSON object per line"),
    # tools/test.py's eval_<time>.json: one indented JSON document
    ('{\n  "config": "x.py",\n  "metric": {"mIoU": 0.5}\n}\n',
     r'line 1 is not JSON \(Expecting property name enclosed in double quotes\)'),
    ('[1, 2]\n', r'line 1 is a JSON list, not an object'),
    # lines without a mode after the first (which may be the run's meta)
    ('{"seed": 0}\n{"iter": 10, "loss": 1.0}\n',
     r"line 2: expected 'mode' 'train' or 'val' and a whole 'iter', got mode=None, iter=10"),
    ('{"mode": "train", "iter": "10", "loss": 1.0}\n', r"line 1: .* got mode='train', iter='10'"),
    # a validation line before any training line that cannot hold the iteration evaluated
    ('{"mode": "val", "iter": 15, "mIoU": 0.1}\n{"mode": "train", "iter": 10, "loss": 1.0}\n',
     r"line 1: the validation line's iter=15 is not the iteration evaluated, and no training line comes before it"),
    ('{"seed": 0}\n\n', r"holds no logged iteration \(no line with a 'mode'\)"),
    (b'PK\x03\x04\x80\x81\xfe\xff', r'is not a text file'),
])
def test_a_file_that_is_not_mmcv_json_lines_is_a_named_error(tmp_path, content, expected):
    path = tmp_path / 'run.log.json'
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SystemExit) as info:
        analyze_logs.main([str(path), '--keys', 'loss', '--out', str(tmp_path / 'c.png')])
    assert re.match(rf'error: {re.escape(str(path))}:? {expected}', str(info.value)), str(info.value)
    assert not (tmp_path / 'c.png').exists()


def test_a_value_that_is_not_a_number_is_a_named_error(tmp_path):
    log = write_log(tmp_path / 'x.log.json', [train(10, 1.0, 0.5), dict(train(20, 1.0, 0.5), loss='nan?')])
    with pytest.raises(SystemExit, match=re.escape(f"error: {log}: loss='nan?' at iter 20 is not a number")):
        analyze_logs.main([log, '--keys', 'loss'])


def test_wrong_legend_out_and_size_are_refused_before_anything_is_written(runs, tmp_path, capsys):
    a, b = runs
    with pytest.raises(SystemExit, match=re.escape(
            "error: --legend gives 3 label(s); 2 log(s) x 2 key(s) need 4, in the order: the first "
            "log's keys, then the next log's")):
        analyze_logs.main([a, b, '--keys', 'loss', 'mIoU', '--legend', 'x', 'y', 'z', '--out',
                           str(tmp_path / 'c.png')])
    with pytest.raises(SystemExit):
        analyze_logs.main([a, '--keys', 'loss', '--out', str(tmp_path / 'c.xyz')])
    assert '--out ' + str(tmp_path / 'c.xyz') + ': matplotlib writes none of its kind (.xyz); it writes ' \
        in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyze_logs.main([a, '--keys', 'loss', '--size', '0', '600', '--out', str(tmp_path / 'c.png')])
    assert '--size 0 600: each side must be 1 to 10000 pixels' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['a.log.json', 'b.log.json']


def test_a_failed_write_leaves_the_previous_file_and_no_partial_one(runs, tmp_path, monkeypatch):
    a, _ = runs
    out = tmp_path / 'curves.png'
    out.write_bytes(b'the previous figure')

    def broken(self, fname, **kwargs):
        open(fname, 'wb').write(PNG_SIGNATURE)
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(Figure, 'savefig', broken)
    with pytest.raises(OSError, match=f'could not write {re.escape(str(out))}: no space left on the device'):
        analyze_logs.main([a, '--keys', 'loss', '--out', str(out)])
    assert out.read_bytes() == b'the previous figure'
    assert sorted(os.listdir(tmp_path)) == ['a.log.json', 'b.log.json', 'curves.png']
