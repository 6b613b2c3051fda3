"""tools/benchmark.py --memory: one fresh process per setting, one table; --dist: the step of
several Gloo processes through DistributedDataParallel."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_memory_table_one_row_per_setting():
    cmd = [sys.executable, 'tools/benchmark.py', 'configs/demo/cascade_clip_tiny_synthetic.py',
           '--memory', '--shape', '64', '64', '--batch', '1', '--with-cp', 'off', 'on',
           '--threads', '1']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    rows = re.findall(r'^\| none \| +(off|on) \| +1 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$', out, re.M)
    assert [r[0] for r in rows] == ['off', 'on']
    assert all(0.1 < float(r[1]) <= float(r[2]) < 8 for r in rows)


def test_dist_step_two_processes():
    cmd = [sys.executable, 'tools/benchmark.py', 'configs/demo/cascade_clip_tiny_synthetic.py',
           '--dist', '2', '--shape', '64', '64', '--batch', '1', '--threads', '1', '--train-runs', '2']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    m = re.search(r'2 CPU processes \(Gloo, MMDDP\), batch 1 per process, 64x64, 1 thread\(s\) per '
                  r'process:\s+training step ([\d.]+) s \(median of 2, best ([\d.]+) s', out)
    assert m, out[-3000:]
    assert 0 < float(m.group(2)) <= float(m.group(1)) < 60


def test_sweep_table_new_and_reference_side_by_side():
    cmd = [sys.executable, 'tools/benchmark.py', 'configs/demo/cascade_clip_tiny_synthetic.py',
           '--sweep', '--vocab', '3', '40', '--image', '64x96', '--threads', '1', '--mem-cap', '4',
           '--repeat', '2']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r'^\| 64x96 \| (\d+) \| ([\d.]+) s \| ([\d.]+) \| [\d.]+ s \| [\d.]+ s \| ([\d.]+) GiB \(([\d.]+) total\) \| '
                      r'[\d.]+ s \| ([\d.]+) GiB \(([\d.]+) total\) \| (\w+) \|$', proc.stdout + proc.stderr,
                      re.M)
    assert [r[0] for r in rows] == ['3', '40']
    assert all(r[7] == 'yes' for r in rows)  # the same labels from both paths
    assert all(0 <= float(r[3]) < float(r[4]) < 4 for r in rows)
    # the time ratio to the fewest classes, from the per-case seconds the sweep logs
    secs = {int(k): float(v) for k, v in re.findall(
        r"'classes': (\d+), 'path': 'chunked'.*?'seconds': ([\d.e-]+)", proc.stdout + proc.stderr)}
    assert sorted(secs) == [3, 40]
    assert rows[0][2] == '1.00'
    assert float(rows[1][2]) == pytest.approx(secs[40] / secs[3], abs=0.006)
    # backbone + decoders, then the label maps: the first part is part of the whole
    parts = re.findall(r"'path': 'chunked'.*?'seconds': ([\d.e-]+), 'network_s': ([\d.e-]+)",
                       proc.stdout + proc.stderr)
    assert len(parts) == 2
    assert all(0 < float(network) < float(total) for total, network in parts)
    # --repeat 2: two timed runs per case, the shown time is one of them (the median run)
    repeats = re.findall(r"'seconds': ([\d.e-]+),.*?'all_seconds': \[([^\]]*)\]",
                         proc.stdout + proc.stderr)
    assert len(repeats) == 4  # 2 vocabularies x (chunked, reference)
    for shown, runs in repeats:
        assert len(runs.split(',')) == 2 and float(shown) in [float(v) for v in runs.split(',')]
