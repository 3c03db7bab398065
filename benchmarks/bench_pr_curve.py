"""PR-curve suite: tbfast vs torch.utils.tensorboard's add_pr_curve, tensorboardX and
torchmetrics (if importable) on the same data, in one run. Correctness is checked first;
the accumulator's memory over 100 batches is recorded too."""

import os
import time
import tracemalloc

import numpy as np
import torch

import tbfast

from . import harness

SUITE = "pr_curve"


def _rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError):
        return float("nan")


def _check_binary(labels, preds, t, weights=None):
    from torch.utils.tensorboard._convert_np import make_np
    from torch.utils.tensorboard.summary import compute_curve

    ours = tbfast.pr_curve(labels, preds, t, weights=weights).data
    theirs = compute_curve(make_np(labels), make_np(preds), t, weights)
    if not np.array_equal(ours, theirs):
        raise AssertionError(f"tbfast PR curve (T={t}) differs from torch's compute_curve: benchmark aborted")


def _check_multiclass(labels, preds, t):
    from torch.utils.tensorboard.summary import compute_curve

    ours = tbfast.pr_curve(labels, preds, t).data
    for c in range(preds.shape[1]):
        theirs = compute_curve((labels == c).numpy(), preds[:, c].contiguous().numpy(), t)
        if not np.array_equal(ours[c], theirs):
            raise AssertionError(f"tbfast class {c} curve differs from torch's: benchmark aborted")


def _torchmetrics():
    try:
        from torchmetrics.classification import MulticlassPrecisionRecallCurve
    except ImportError:
        print("  torchmetrics not importable: skipped")
        return None
    return MulticlassPrecisionRecallCurve


def _sz(n):
    e = int(round(np.log10(n)))
    return f"1e{e}" if 10 ** e == n else str(n)


def run(ctx):
    gen = torch.Generator().manual_seed(0)
    t = 127
    ws = harness.writers(ctx, "pr_curve")
    step = [0]

    # 0. Correctness: value for value against torch's formula, incl. threshold boundaries.
    p = torch.rand(200_003, generator=gen)
    p[::7] = torch.randint(0, t, (p[::7].numel(),), generator=gen) / (t - 1)
    lab = torch.rand(200_003, generator=gen) < 0.3
    _check_binary(lab, p, t)
    _check_binary(lab, p, t, weights=np.random.default_rng(0).random(p.numel()))
    _check_binary(lab, p, 1001)
    _check_multiclass(torch.randint(0, 10, (50_000,), generator=gen), torch.rand(50_000, 10, generator=gen), t)

    # 1. Binary, float32 predictions, bool labels, end to end through each writer.
    # quick: the target size and a small one (for the plot)
    for n in ([10 ** 5, 10 ** 7] if ctx.quick else [10 ** 5, 10 ** 6, 10 ** 7]):
        preds = torch.rand(n, generator=gen)
        labels = torch.rand(n, generator=gen) < 0.3
        case = f"binary N={_sz(n)} T={t}"
        reps = 3 if n >= 10 ** 7 else 5
        ctx.read_once(SUITE, case, preds, labels, size=n)
        for name, w in ws.items():
            def call(w=w):
                step[0] += 1
                w.add_pr_curve("binary", labels, preds, step[0], num_thresholds=t)
                w.flush()
            ctx.time(SUITE, case, f"{name} add_pr_curve", call, repeat=reps, size=n)
        ctx.time(SUITE, case, "tbfast.pr_curve (compute only)", lambda: tbfast.pr_curve(labels, preds, t).data,
                 repeat=reps, size=n)
        big = 10_001
        ctx.read_once(SUITE, f"binary N={_sz(n)} T={big}", preds, labels)
        ctx.time(SUITE, f"binary N={_sz(n)} T={big}", "tbfast add_pr_curve",
                 lambda: ws["tbfast"].add_pr_curve("binary_T10001", labels, preds, 0, num_thresholds=big),
                 repeat=reps)

    # 2. Multi-class, C = 10, class-index labels: one add_pr_curves vs ten add_pr_curve.
    c = 10
    n = 10 ** 6  # the target size, in quick mode too
    preds = torch.softmax(torch.randn(n, c, generator=gen) * 2, dim=1)
    labels = torch.randint(0, c, (n,), generator=gen)
    case = f"multiclass N={_sz(n)} C={c} T={t}"
    names = [f"class{k}" for k in range(c)]
    cols = [preds[:, k].contiguous() for k in range(c)]  # torch needs one tensor per class anyway
    hits = [labels == k for k in range(c)]
    ctx.read_once(SUITE, case, preds, labels)
    for name, w in ws.items():
        if name == "tbfast":
            ctx.time(SUITE, case, "tbfast add_pr_curves",
                     lambda w=w: w.add_pr_curves("mc", labels, preds, 0, num_thresholds=t, class_names=names))
            ctx.time(SUITE, case, "tbfast add_pr_curve x10",
                     lambda w=w: [w.add_pr_curve(f"mc1/{k}", hits[k], preds[:, k], 0) for k in range(c)])
        else:
            def ten(w=w):
                for k in range(c):
                    w.add_pr_curve(f"mc/{names[k]}", hits[k], preds[:, k], 0, num_thresholds=t)
            ctx.time(SUITE, case, f"{name} add_pr_curve x10", ten, repeat=3)
    logits = torch.log(preds)
    ctx.time(SUITE, case, "tbfast add_pr_curves logits=True",
             lambda: ws["tbfast"].add_pr_curves("mc_logits", labels, logits, 0, num_thresholds=t, logits=True),
             repeat=3)

    tm_cls = _torchmetrics()
    if tm_cls is not None:
        def tm(n_rows):
            m = tm_cls(num_classes=c, thresholds=t)
            m.update(preds[:n_rows], labels[:n_rows])
            return m.compute()
        # Its update switches from an O(N*T*C) vectorised path to a per-threshold loop,
        # linear in N, above N*C = 10^6 elements. The full suite runs it at size; the quick
        # suite on 2*10^5 rows (still the loop path: N*C = 2*10^6) scaled by 5, labelled.
        rows = n if not ctx.quick else 2 * 10 ** 5
        scale = n // rows
        first = _once(lambda: tm(rows))
        best = first if first > 30 else min(first, _once(lambda: tm(rows)))
        label = "torchmetrics update+compute" + ("" if scale == 1 else f" (2e5 rows x{scale}, extrapolated)")
        ctx.record(SUITE, case, label, best * scale, runs=1 if first > 30 else 2, extrapolated=scale > 1)

    # 3. Accumulator: 100 batches of 10^5 (10^4 quick), memory must stay flat.
    batch = 10 ** 4 if ctx.quick else 10 ** 5
    acc = tbfast.PRCurveAccumulator(t, c)
    bp = torch.softmax(torch.randn(batch, c, generator=gen), dim=1)
    bl = torch.randint(0, c, (batch,), generator=gen)
    acc.update(bp, bl)
    acc.reset()
    tracemalloc.start()
    rss0, traced0 = _rss_mb(), tracemalloc.get_traced_memory()[0]
    rss, traced = [], []
    t0 = time.perf_counter()
    for _ in range(100):
        acc.update(bp, bl)
        rss.append(_rss_mb())
        traced.append(tracemalloc.get_traced_memory()[0])
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ctx.record(SUITE, f"accumulator 100 x {_sz(batch)} rows C={c} T={t}", "tbfast update x100", elapsed,
               rss_mb_before=round(rss0, 1), rss_mb_after_1=round(rss[0], 1), rss_mb_after_100=round(rss[-1], 1),
               traced_kb_growth_1_to_100=round((traced[-1] - traced[0]) / 1024, 1),
               traced_kb_state=round((traced[-1] - traced0) / 1024, 1), traced_kb_peak=round(peak / 1024, 1))
    ws["tbfast"].add_pr_accumulator("accumulator", acc, 0)
    for w in ws.values():
        w.close()


def _once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
