"""Plot training curves from MMCV's json logs and print each run's time per iteration (the
interface of MMSeg 0.30's tools/analyze_logs.py).

    python tools/analyze_logs.py LOG.json [LOG2.json ...] [--keys loss mIoU] [--legend a b ...]
        [--title T] [--out curves.png] [--size WIDTH HEIGHT]

LOG.json is the ``WORK_DIR/<timestamp>.log.json`` that MMCV's TextLoggerHook writes while
``tools/train.py`` runs: one JSON object per line. The figure has one panel per key and one
curve per (log, key), a colour per log: a key of the training lines (loss, decode.loss_mask,
decode.acc_seg, lr, ...) at its logged iterations; a key of the validation lines (mIoU,
mIoU_seen, mIoU_unseen, hIoU, aAcc, IoU.<class>, ...) at the training iteration each evaluation
ran after, with markers. ``--legend`` gives one label per (log, key), the first log's keys
first. The figure is written to ``--out`` only (PNG, PDF, SVG, JPEG, ... by its extension),
whole or not at all. For each log, the mean of MMCV's ``time`` (seconds per iteration) over its
training lines is printed, the first logged interval left out (it holds the start-up), with the
slowest and fastest interval.
"""
import argparse
import difflib
import json
import logging
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402 (no display needed)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402
from prettytable import PrettyTable  # noqa: E402

from cascade_clip.utils.files import atomic_output  # noqa: E402

EXPECTED = ("expected MMCV's json log: one JSON object per line, as in WORK_DIR/<timestamp>.log.json "
            "(next to the text log <timestamp>.log)")
NOT_KEYS = ('mode', 'iter')  # what every line has: not curves
DPI = 100
MAX_SIZE = 10000  # pixels per side: Agg's limit is 2**16, and memory goes with the area


@dataclass
class JsonLog:
    """The iterations logged in one json log.

    Args:
        path: the file.
        train: its training lines, in file order.
        val: its validation lines, ``iter`` the training iteration each evaluation ran after.
    """
    path: str
    train: List[dict]
    val: List[dict]


def load_json_log(path: str, logger=None) -> JsonLog:
    """Read ``path``, MMCV's json log (ValueError naming the file and line otherwise)."""
    records: List[Tuple[int, dict]] = []
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f'{path} is not a text file: {EXPECTED}') from None
    first = True
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path} line {number} is not JSON ({e.msg}): {EXPECTED}') from None
        if not isinstance(record, dict):
            raise ValueError(f'{path} line {number} is a JSON {type(record).__name__}, not an '
                             f'object: {EXPECTED}')
        if 'mode' not in record and first:
            first = False
            continue  # the run's meta (env_info, seed, ...), which TextLoggerHook writes first
        first = False
        mode, iteration = record.get('mode'), record.get('iter')
        if mode not in ('train', 'val') or not isinstance(iteration, int) or isinstance(iteration, bool):
            raise ValueError(f"{path} line {number}: expected 'mode' 'train' or 'val' and a whole "
                             f"'iter', got mode={mode!r}, iter={iteration!r}: {EXPECTED}")
        records.append((number, record))
    if not records:
        raise ValueError(f"{path} holds no logged iteration (no line with a 'mode'): {EXPECTED}")
    train = [r for _, r in records if r['mode'] == 'train']
    return JsonLog(path, train, _place_evaluations(path, records, logger))


def _place_evaluations(path: str, records: Sequence[Tuple[int, dict]], logger=None) -> List[dict]:
    """The validation records with ``iter`` the training iteration each evaluation ran after.

    This project's evaluation hooks log that iteration; MMSeg's log the number of validation
    batches there. An evaluation runs after a training iteration, once that iteration's line
    (if logged) is written: its iteration is at least the training line's before it and less
    than the one after. A log whose validation lines all fit is taken as it is; otherwise
    each evaluation is placed at the training iteration logged before it, with a warning.
    """
    placed = []  # [line number, record, training iteration before, training iteration after]
    last = None
    for number, record in records:
        if record['mode'] == 'train':
            for p in placed:
                if p[3] is None:
                    p[3] = record['iter']
            last = record['iter']
        else:
            placed.append([number, record, last, None])
    if all((before is None or before <= r['iter']) and (after is None or r['iter'] < after)
           for _, r, before, after in placed):
        return [r for _, r, _, _ in placed]
    for number, r, before, _ in placed:
        if before is None:
            raise ValueError(f"{path} line {number}: the validation line's iter={r['iter']} is not "
                             f"the iteration evaluated, and no training line comes before it")
    print_log(f"{path}: its validation lines hold MMSeg's count of validation batches in 'iter', "
              f"not the training iteration: each evaluation is placed at the training iteration "
              f"logged before it (exact when evaluation.interval is a multiple of "
              f"log_config.interval)", logger, level=logging.WARNING)
    return [dict(r, iter=before) for _, r, before, _ in placed]


def _has(records: Sequence[dict]) -> List[str]:
    return sorted({k for r in records for k in r if k not in NOT_KEYS})


def check_keys(logs: Sequence[JsonLog], keys: Sequence[str]) -> None:
    """ValueError naming every log that misses one of ``keys``, with the keys it has."""
    problems = []
    for log in logs:
        missing = [k for k in keys if k in NOT_KEYS or not any(k in r for r in log.train + log.val)]
        if missing:
            has = _has(log.train + log.val)
            names = [repr(k) + ''.join(f" (did you mean '{c}'?)" for c in difflib.get_close_matches(k, has, n=1))
                     for k in missing]
            val = ', '.join(_has(log.val)) if log.val else '(no validation line)'
            problems.append(f"{log.path}: no key {', '.join(names)}; its training lines have: "
                            f"{', '.join(_has(log.train))}; its validation lines have: {val}")
    if problems:
        raise ValueError('\n'.join(problems))


def curve(log: JsonLog, key: str) -> Tuple[List[int], List[float], str]:
    """(iterations, values, 'train' or 'val') of ``key`` in ``log``: from the training lines
    when they have it (``lr`` is in both), else from the validation lines."""
    for kind, records in (('train', log.train), ('val', log.val)):
        rows = [r for r in records if key in r]
        for r in rows:
            if isinstance(r[key], bool) or not isinstance(r[key], (int, float)):
                raise ValueError(f"{log.path}: {key}={r[key]!r} at iter {r['iter']} is not a number")
        if rows:
            return [r['iter'] for r in rows], [float(r[key]) for r in rows], kind
    raise ValueError(f'{log.path}: no key {key!r}')


def plot_curves(logs: Sequence[JsonLog], keys: Sequence[str], legend: Optional[Sequence[str]] = None,
                title: Optional[str] = None, size: Optional[Tuple[int, int]] = None) -> Figure:
    """The figure: one panel per key, one curve per (log, key) in colour ``C<log index>``.

    Args:
        logs: the runs.
        keys: the keys to plot (see :func:`check_keys`).
        legend: one label per (log, key), log-major; default ``'<path>: <key>'``.
        title: the figure's title.
        size: (width, height) in pixels; default 1000 x (300 per key + 100).
    """
    labels = list(legend) if legend else [f'{log.path}: {key}' for log in logs for key in keys]
    if len(labels) != len(logs) * len(keys):
        raise ValueError(f'--legend gives {len(labels)} label(s); {len(logs)} log(s) x {len(keys)} '
                         f'key(s) need {len(logs) * len(keys)}, in the order: the first log\'s '
                         f'keys, then the next log\'s')
    width, height = size or (1000, 300 * len(keys) + 100)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for j, (key, ax) in enumerate(zip(keys, axes)):
        for i, log in enumerate(logs):
            iters, values, kind = curve(log, key)
            style = dict(marker='o') if kind == 'val' else dict(linewidth=1.5)
            ax.plot(iters, values, color=f'C{i}', label=labels[i * len(keys) + j], **style)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1].set_xlabel('iteration')
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return fig


def iteration_time(log: JsonLog) -> Optional[Dict]:
    """Mean of ``time`` over the training lines but the first, with the slowest and fastest
    (iteration, time); None when there is no second training line."""
    if not any('time' in r for r in log.train):
        return None
    timed = list(zip(*curve(log, 'time')[:2]))[1:]
    if not timed:
        return None
    return dict(mean=sum(t for _, t in timed) / len(timed), intervals=len(timed),
                slowest=max(timed, key=lambda x: x[1]), fastest=min(timed, key=lambda x: x[1]))


def time_table(logs: Sequence[JsonLog]) -> str:
    """The table of :func:`iteration_time` of every log."""
    table = PrettyTable(['log', 's/iter', 'slowest (iter)', 'fastest (iter)', 'intervals'])
    table.align['log'] = 'l'
    for log in logs:
        t = iteration_time(log)
        if t is None:
            table.add_row([log.path, '-', '-', '-', '0 (needs 2 timed training lines)'])
        else:
            table.add_row([log.path, f'{t["mean"]:.4f}', f'{t["slowest"][1]:.4f} ({t["slowest"][0]})',
                           f'{t["fastest"][1]:.4f} ({t["fastest"][0]})', t['intervals']])
    return table.get_string()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('json_logs', nargs='+', help="MMCV's json logs (WORK_DIR/<timestamp>.log.json)")
    parser.add_argument('--keys', nargs='+', default=['mIoU'], help='keys to plot (default: mIoU)')
    parser.add_argument('--legend', nargs='+', default=None,
                        help='one label per (log, key): the first log\'s keys, then the next log\'s')
    parser.add_argument('--title', default=None, help='title of the figure')
    parser.add_argument('--out', default=None, help='the figure file (.png, .pdf, .svg, .jpg, ...); '
                        'without it only the times are printed')
    parser.add_argument('--size', nargs=2, type=int, default=None, metavar=('WIDTH', 'HEIGHT'),
                        help='of the figure, in pixels (default: 1000 x (300 per key + 100))')
    args = parser.parse_args(argv)
    if args.out is not None:
        ext = osp.splitext(args.out)[1].lstrip('.').lower()
        formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
        if ext not in formats:
            parser.error(f'--out {args.out}: matplotlib writes none of its kind (.{ext}); it writes '
                         f'{", ".join("." + f for f in sorted(formats))}')
    if args.size is not None and not all(0 < s <= MAX_SIZE for s in args.size):
        parser.error(f'--size {args.size[0]} {args.size[1]}: each side must be 1 to {MAX_SIZE} pixels')
    return args


def main(argv=None) -> Figure:
    """Run the tool; returns the figure (written to ``--out`` when given)."""
    args = parse_args(argv)
    logger = get_logger('cascade_clip')
    try:
        logs = [load_json_log(path, logger) for path in args.json_logs]
        check_keys(logs, args.keys)
        fig = plot_curves(logs, args.keys, args.legend, args.title, args.size)
    except (OSError, ValueError) as e:
        raise SystemExit(f'error: {e}')
    if args.out is not None:
        with atomic_output(args.out) as tmp:
            fig.savefig(tmp, format=osp.splitext(args.out)[1].lstrip('.').lower())
        print_log(f'curves of {", ".join(args.keys)} written to {args.out}', logger)
    else:
        print_log('no --out: the curves are not written (give --out curves.png)', logger)
    print("time per iteration (MMCV's 'time' of the training lines, the first logged interval left "
          "out: it holds the start-up):")
    print(time_table(logs))
    return fig


if __name__ == '__main__':
    main()
