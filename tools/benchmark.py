"""Speed and memory of the model at full size on this machine. Random weights; prints the
figures.

Speed: one crop through ``encode_decode`` and one training step (AdamW), fp32 and/or bf16:

    python tools/benchmark.py CONFIG [--threads 2] [--shape 512 512] [--batch 2]
        [--amp none bf16] [--runs 5] [--train-runs 3] [--skip-train] [--reference]

Memory (``--memory``): every combination of ``--amp`` x ``--with-cp`` x ``--batch`` runs in a
fresh process (one forward + backward of the training loss, then the AdamW step), whose peak
resident memory (``ru_maxrss``) and step time are printed side by side in one table:

    python tools/benchmark.py CONFIG --memory [--amp none bf16] [--with-cp off on]
        [--batch 1 2 4] [--threads 2] [--shape 512 512]

Distributed training step (``--dist N``): N CPU processes (Gloo), the model wrapped as
``train_segmentor`` wraps it (DistributedDataParallel) and the optimizer hook it chooses;
each process trains on its own random batch of ``--batch`` images with ``--threads``
threads. Prints the median and best time of ``--train-runs`` steps after one warm-up step
(rank 0's clock, each step ending with the optimizer step):

    python tools/benchmark.py CONFIG --dist 2 [--batch 1] [--threads 1] [--train-runs 3]

Vocabulary x image size (``--sweep``): MMSeg's test path (``simple_test``, the config's
test_cfg) on one random image per case, the class-chunked path and the reference (all classes
at full resolution at once: ``test_cfg.class_chunk`` = the number of classes), each case in a
fresh process whose data memory is capped (``--mem-cap`` GiB; a reference that needs more is
reported as exceeding it); after a warm-up on one crop, the median time of ``--repeat`` runs
(split into backbone + decoders and label maps for the chunked path, with its ratio to the
fewest classes on the same image) and peak resident memory above the model's own, one table:

    python tools/benchmark.py CONFIG --sweep --vocab 20 171 847 2000 --image 512x683 1536x2048
        [--mem-cap 8] [--threads 2] [--no-reference] [--repeat 3]
"""
import argparse
import json
import subprocess
import os.path as osp
import resource
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmcv.runner import build_optimizer  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis.measure import build_model_for_measurement, warn_if_slow_amp  # noqa: E402
from cascade_clip.utils.config import read_config  # noqa: E402


def timed(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512))
    parser.add_argument('--batch', type=int, nargs='+', default=[2],
                        help='training batch size(s) (several with --memory)')
    parser.add_argument('--memory', action='store_true',
                        help='peak memory and time of a training step per setting, each in a '
                        'fresh process')
    parser.add_argument('--with-cp', nargs='+', default=['off'], choices=['off', 'on'],
                        help='activation checkpointing of the image encoder (with --memory)')
    parser.add_argument('--dist', type=int, default=None, metavar='N',
                        help='time the training step of N CPU processes (Gloo, '
                        'DistributedDataParallel), --batch images and --threads threads each')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--sweep', action='store_true',
                        help='test-path time and memory per vocabulary size x image size, the '
                        'chunked path and the reference side by side, each in a fresh process')
    parser.add_argument('--vocab', type=int, nargs='+', default=[20, 171, 847, 2000])
    parser.add_argument('--image', nargs='+', default=['512x683', '1536x2048'], help='HxW')
    parser.add_argument('--mem-cap', type=float, default=8.0,
                        help='GiB of data memory each --sweep case may use (RLIMIT_DATA)')
    parser.add_argument('--no-reference', action='store_true', help='--sweep: chunked path only')
    parser.add_argument('--repeat', type=int, default=1,
                        help='--sweep: timed runs per case after a warm-up; the median run is shown '
                             '(the faster middle one for an even count)')
    parser.add_argument('--sweep-child', help=argparse.SUPPRESS)
    parser.add_argument('--amp', nargs='+', default=['none'], choices=['none', 'bf16', 'fp16'],
                        help='precisions to measure (bf16 pays only with AVX-512 BF16 / AMX)')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--train-runs', type=int, default=3)
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--reference', action='store_true',
                        help='also time the published code path on the same weights (fp32) and '
                             'compare its outputs')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        return memory_child(args, json.loads(args.child))
    if args.repeat < 1:
        raise SystemExit(f'--repeat wants a positive number of runs, got {args.repeat}')
    if args.sweep_child:
        return sweep_child(args, json.loads(args.sweep_child))
    if args.sweep:
        return sweep_table(args)
    if args.memory:
        return memory_table(args)
    if args.dist:
        return dist_table(args)
    args.batch = args.batch[0]
    logger = get_logger('cascade_clip')
    cfg = read_config(args.config)
    model = build_model_for_measurement(cfg, None, logger)
    model.class_embeddings()
    H, W = args.shape
    g = torch.Generator().manual_seed(0)
    img1 = torch.randn(1, 3, H, W, generator=g)
    rows = []
    for amp in args.amp:
        model.set_precision(None if amp == 'none' else amp)
        warn_if_slow_amp('cpu', model.amp_dtype, logger)
        model.eval()
        with torch.no_grad():
            med, best = timed(lambda: model.encode_decode(img1, None), args.runs)
            backbone, _ = timed(lambda: model.extract_feat(img1) if amp == 'none' else
                                _with(model, img1), max(2, args.runs // 2))
        rows.append(f'inference {amp:>5}: encode_decode of one {H}x{W} crop {med:.3f} s (median of '
                    f'{args.runs}, best {best:.3f} s); image encoder alone {backbone:.3f} s')
        print_log(rows[-1], logger)
        if args.skip_train:
            continue
        model.train()
        med, best, peak = time_train_step(model, cfg, args, H, W, g, lambda imgs, gt, metas: model.train_step(
            dict(img=imgs, img_metas=metas, gt_semantic_seg=gt), None)['loss'])
        rows.append(f'training  {amp:>5}: one step at batch {args.batch}, {H}x{W}, AdamW {med:.2f} s '
                    f'(median of {args.train_runs}, best {best:.2f} s); peak RSS so far {peak:.1f} GiB')
        print_log(rows[-1], logger)
    if args.reference:
        rows += reference_rows(model, cfg, img1, args, g, logger)
    print_log(f'{args.config} with {args.threads} threads:\n  ' + '\n  '.join(rows), logger)


def reference_rows(model, cfg, img1, args, g, logger):
    """Time tools/published_path.py on the same weights (fp32)."""
    import tempfile

    import numpy as np

    from tools import published_path as P
    model.set_precision(None)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = f'{d}/emb.npy'
        np.save(path, model.class_embeddings().cpu().numpy())
        model.eval()
        with torch.no_grad():
            diff = (model.encode_decode(img1, None) - P.encode_decode(model, img1, path)).abs().max().item()
            med, best = timed(lambda: P.encode_decode(model, img1, path), args.runs)
        rows.append(f'published path, inference: {med:.3f} s per crop (median of {args.runs}, best '
                    f'{best:.3f} s); max |difference| of the score maps to this project: {diff:.2e}')
        print_log(rows[-1], logger)
        if not args.skip_train:
            model.train()
            H, W = img1.shape[-2:]
            med, best, peak = time_train_step(model, cfg, args, H, W, g,
                                              lambda imgs, gt, metas: P.train_loss(model, imgs, gt, path)[0])
            rows.append(f'published path, training step at batch {args.batch}: {med:.2f} s (median of '
                        f'{args.train_runs}, best {best:.2f} s); peak RSS so far {peak:.1f} GiB')
            print_log(rows[-1], logger)
    return rows


def random_training_batch(B: int, H: int, W: int, num_classes: int, g: torch.Generator):
    """Random images (B, 3, H, W), labels (B, 1, H, W) in [0, num_classes) with the top eighth
    ignored (255), and their img_metas."""
    imgs = torch.randn(B, 3, H, W, generator=g)
    gt = torch.randint(0, num_classes, (B, 1, H, W), generator=g)
    gt[:, :, :H // 8] = 255
    metas = [dict(ori_shape=(H, W, 3), img_shape=(H, W, 3), pad_shape=(H, W, 3), flip=False)] * B
    return imgs, gt, metas


def time_train_step(model, cfg, args, H, W, g, loss_fn):
    """Median/best seconds of ``args.train_runs`` AdamW steps of ``loss_fn`` on a random batch,
    and the peak RSS (GiB) so far."""
    opt = build_optimizer(model, cfg.optimizer)
    imgs, gt, metas = random_training_batch(args.batch, H, W, model.num_classes, g)

    def step():
        loss = loss_fn(imgs, gt, metas)
        opt.zero_grad()
        loss.backward()
        opt.step()

    med, best = timed(step, args.train_runs)
    return med, best, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def dist_table(args):
    """Spawn ``args.dist`` Gloo processes that time the distributed training step."""
    import tempfile

    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as d:
        out = osp.join(d, 'times.json')
        mp.spawn(dist_child, args=(args, osp.join(d, 'rendezvous'), out), nprocs=args.dist, join=True)
        r = json.load(open(out))
    H, W = args.shape
    print_log(f'{args.config}, {args.dist} CPU processes (Gloo, {r["engine"]}), batch {args.batch[0]} '
              f'per process, {H}x{W}, {args.threads} thread(s) per process:\n  training step '
              f'{r["median"]:.2f} s (median of {args.train_runs}, best {r["best"]:.2f} s, after one '
              f'warm-up step); peak RSS of rank 0 {r["peak"]:.1f} GiB', get_logger('cascade_clip'))


def dist_child(rank, args, init_file, out):
    """One process of ``--dist``: train_segmentor's wrapper and optimizer hook, timed steps."""
    from types import SimpleNamespace

    import torch.distributed as dist
    from mmcv.parallel import DataContainer
    from mmcv.runner import HOOKS
    from mmcv.utils import build_from_cfg

    from cascade_clip.apis import optimizer_hook_config, wrap_model
    torch.set_num_threads(args.threads)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=args.dist)
    try:
        logger = get_logger('cascade_clip', log_level='ERROR')
        cfg = read_config(args.config)
        torch.manual_seed(0)
        model = build_model_for_measurement(cfg, None, logger)
        model.class_embeddings()
        wrapped = wrap_model(model, 'cpu', distributed=True)
        optimizer = build_optimizer(wrapped, cfg.optimizer)
        hook_cfg, _ = optimizer_hook_config(cfg.optimizer_config, model.amp_dtype)
        hook = build_from_cfg(hook_cfg, HOOKS)
        H, W = args.shape
        g = torch.Generator().manual_seed(1 + rank)  # each process its own images
        imgs, gt, metas = random_training_batch(args.batch[0], H, W, model.num_classes, g)
        batch = dict(img=DataContainer([imgs], stack=True), img_metas=DataContainer([metas], cpu_only=True),
                     gt_semantic_seg=DataContainer([gt], stack=True))
        wrapped.train()

        def step():
            outputs = wrapped.train_step(batch, optimizer)
            runner = SimpleNamespace(model=wrapped, optimizer=optimizer, outputs=outputs,
                                     log_buffer=SimpleNamespace(update=lambda *a, **k: None))
            hook.after_train_iter(runner)

        med, best = timed(step, args.train_runs)
        if rank == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            with open(out, 'w') as f:
                json.dump(dict(median=med, best=best, peak=peak, engine=type(wrapped).__name__), f)
    finally:
        dist.destroy_process_group()


def memory_table(args):
    """Run every (amp, with_cp, batch) setting in a fresh process; print one table."""
    logger = get_logger('cascade_clip')
    for amp in args.amp:
        warn_if_slow_amp('cpu', None if amp == 'none' else amp, logger)
    rows = []
    for amp in args.amp:
        for cp in args.with_cp:
            for batch in args.batch:
                setting = dict(amp=amp, with_cp=cp == 'on', batch=batch)
                cmd = [sys.executable, osp.abspath(__file__), args.config, '--threads', str(args.threads),
                       '--shape', *map(str, args.shape), '--child', json.dumps(setting)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f'{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}')
                r = json.loads(lines[-1])
                rows.append(f'| {amp:>4} | {cp:>3} | {batch:>2} | {r["fwd_bwd_peak_gib"]:.2f} | '
                            f'{r["step_peak_gib"]:.2f} | {r["fwd_bwd_s"]:.1f} |')
                print_log(f'{setting}: {r}', logger)
    H, W = args.shape
    head = ('| amp | with_cp | batch | peak RSS, forward + backward (GiB) | peak RSS with the AdamW '
            'step (GiB) | forward + backward (s) |\n|---|---|---|---|---|---|')
    print_log(f'{args.config}, {H}x{W}, {args.threads} threads, one fresh process per row:\n'
              + head + '\n' + '\n'.join(rows), logger)


def memory_child(args, setting):
    """One setting in this (fresh) process: build, one forward + backward, one AdamW step;
    prints a JSON line with the peak RSS after the backward and after the step."""
    logger = get_logger('cascade_clip', log_level='ERROR')
    cfg = read_config(args.config)
    cfg.model.backbone.with_cp = setting['with_cp']
    cfg.model.amp_dtype = None if setting['amp'] == 'none' else setting['amp']
    model = build_model_for_measurement(cfg, None, logger)
    model.class_embeddings()
    model.train()
    H, W = args.shape
    B = setting['batch']
    g = torch.Generator().manual_seed(0)
    imgs, gt, metas = random_training_batch(B, H, W, model.num_classes, g)
    opt = build_optimizer(model, cfg.optimizer)
    t0 = time.perf_counter()
    model.train_step(dict(img=imgs, img_metas=metas, gt_semantic_seg=gt), None)['loss'].backward()
    fwd_bwd = time.perf_counter() - t0
    peak_fb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    opt.step()
    peak_step = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(dict(fwd_bwd_s=fwd_bwd, fwd_bwd_peak_gib=peak_fb, step_peak_gib=peak_step)))


def sweep_table(args):
    """Every (image, vocabulary, path) case in a fresh, memory-capped process; one table."""
    logger = get_logger('cascade_clip')
    sizes = []
    for spec in args.image:
        try:
            h, w = (int(v) for v in spec.lower().split('x'))
        except ValueError:
            raise SystemExit(f'--image wants HxW, e.g. 512x683; got {spec!r}')
        sizes.append((h, w))
    paths = ['chunked'] + ([] if args.no_reference else ['reference'])
    results = {}
    for h, w in sizes:
        for k in args.vocab:
            for path in paths:
                case = dict(h=h, w=w, classes=k, path=path, cap_gib=args.mem_cap,
                            repeat=args.repeat)
                cmd = [sys.executable, osp.abspath(__file__), args.config, '--threads',
                       str(args.threads), '--sweep-child', json.dumps(case)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
                if lines:
                    r = json.loads(lines[-1])
                elif proc.returncode != 0:  # killed or out of memory outside Python's reach
                    r = dict(failed=f'exit code {proc.returncode}: {proc.stderr.strip()[-300:]}')
                else:
                    raise RuntimeError(f'{cmd} printed no result:\n{proc.stderr[-3000:]}')
                results[(h, w, k, path)] = r
                print_log(f'{case}: {r}', logger)

    def cell(r):
        if r is None:
            return ' | '
        if r.get('failed'):
            what = f'exceeds {args.mem_cap:g} GiB' if 'memory' in r['failed'] else f'failed ({r["failed"][:60]})'
            return f'{what} | - | '
        return f'{r["seconds"]:.1f} s | {r["peak_above_model_gib"]:.2f} GiB ({r["peak_rss_gib"]:.2f} total) | '

    head = ('| image | classes | chunked: time | time / time with the fewest classes | of which '
            'backbone + decoders | of which label maps | chunked: peak above the model (total) |')
    sep = '|---|---|---|---|---|---|---|'
    if 'reference' in paths:
        head += ' reference: time | reference: peak above the model (total) | labels identical |'
        sep += '---|---|---|'
    rows = []
    for h, w in sizes:
        for k in args.vocab:
            new = results[(h, w, k, 'chunked')]
            base = results[(h, w, min(args.vocab), 'chunked')]
            ratio = (f'{new["seconds"] / base["seconds"]:.2f}' if 'seconds' in new and 'seconds' in base
                     else '-')
            split = (f'{new["network_s"]:.1f} s | {new["seconds"] - new["network_s"]:.1f} s'
                     if 'seconds' in new else '- | -')
            row = f'| {h}x{w} | {k} | ' + cell(new).replace(' | ', f' | {ratio} | {split} | ', 1)
            if 'reference' in paths:
                ref = results[(h, w, k, 'reference')]
                row += cell(ref)
                same = ('yes' if new.get('digest') == ref.get('digest') else 'NO') \
                    if not (ref.get('failed') or new.get('failed')) else ''
                row += f'{same or "-"} |'
            rows.append(row.rstrip())
    print_log(f'{args.config}, {args.threads} threads, one fresh process per case (data capped at '
              f'{args.mem_cap:g} GiB), time of the median of {args.repeat} run(s) after a warm-up, '
              f'random weights and text embeddings:\n' + head + '\n' + sep
              + '\n' + '\n'.join(rows), logger)


def sweep_child(args, case):
    """One case in this (fresh) process: build, set a vocabulary of random embeddings, cap the
    data memory, run ``simple_test`` (or the reference) once on a random image; print JSON."""
    import hashlib

    import torch.nn.functional as F

    from cascade_clip.models.segmentors.class_chunks import running_argmax
    logger = get_logger('cascade_clip', log_level='ERROR')
    cfg = read_config(args.config)
    torch.manual_seed(0)  # the same random weights in every case, so the labels compare
    model = build_model_for_measurement(cfg, None, logger)
    K, H, W = case['classes'], case['h'], case['w']
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(K, model.decode_head.embed_dims, generator=g), dim=-1)
    model.set_vocabulary([f'class {i}' for i in range(K)], embeddings=emb)
    if case['path'] == 'reference':  # all classes at full resolution at once
        model.test_cfg['class_chunk'] = K
    img = torch.randn(1, 3, H, W, generator=g)
    meta = [dict(ori_shape=(H, W, 3), img_shape=(H, W, 3), pad_shape=(H, W, 3), flip=False,
                 scale_factor=1.0)]
    model_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cap = int(case['cap_gib'] * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    # warm-up (first calls of the kernels, the allocator): one crop-sized image, chunked path
    hc, wc = (min(a, b) for a, b in zip(model.test_cfg.get('crop_size', (H, W)), (H, W)))
    with torch.no_grad():
        model.predict_labels(img[:, :, :hc, :wc], [dict(meta[0], ori_shape=(hc, wc, 3),
                                                         img_shape=(hc, wc, 3), pad_shape=(hc, wc, 3))])
    runs, digests = [], set()
    for _ in range(case.get('repeat', 1)):
        t0 = time.perf_counter()
        try:
            with torch.no_grad():  # ``predict_labels``, its two parts timed apart
                scores = model.class_scores(img, meta, True)
                network_s = time.perf_counter() - t0
                labels = running_argmax(scores, K, model.class_chunk)[0]
                del scores
        except (MemoryError, RuntimeError) as e:
            if 'memory' not in str(e).lower() and 'alloc' not in str(e).lower():
                raise
            print(json.dumps(dict(failed=f'out of memory: {str(e)[:200]}')))
            return
        runs.append((time.perf_counter() - t0, network_s))
        digests.add(hashlib.sha1(labels.cpu().numpy().astype('int64').tobytes()).hexdigest())
    if len(digests) != 1:
        raise RuntimeError(f'the labels differ between repeats of one case: {sorted(digests)}')
    seconds, network_s = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]  # the median run
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(dict(seconds=seconds, network_s=network_s, peak_rss_gib=peak,
                          model_gib=model_gib, peak_above_model_gib=peak - model_gib,
                          digest=digests.pop(), all_seconds=[r[0] for r in runs])))


def _with(model, img):
    with model.autocast(img.device.type):
        return model.extract_feat(img)


if __name__ == '__main__':
    main()
