"""Floor suite: tbfast's CPU kernels against reading the same data once.

The yardstick is ``torch.sum`` of the same tensor(s) on the same threads (the read-once
proxy: the least any kernel that looks at every element must spend); each tbfast row
records ``vs_read`` = its time / the read-once time, which compares across machines.
The two are timed interleaved (read, tbfast, read, tbfast, ...) and the best of each is
kept, so a noisy neighbour hits both alike. Rows with a ``limit`` are the issue's
targets (``metric`` names the ratio that must stay at or below it):

* ``tbfast.histogram(x)``, default edges: float32/bfloat16/float16 <= 2.5x read-once,
  float64/int32/int64 <= 3x; 10^7 elements (quick) and 10^8 (full);
* ``add_pr_curves`` N=10^6 C=10 T=127: logits=True, weighted, float16 and float64
  predictions within 2x of the same call on float32 probabilities (``vs_f32``);
* ``add_module_histograms`` of a ~30M-parameter, 100-tensor model (parameters and
  gradients) <= 3x summing every tensor once;
* ``add_histograms`` per-tensor overhead < 10 us: 1000 tensors of 100 float32 values, the
  time on the calling thread per tensor (what the training loop pays). The row also gives
  the total per tensor once flush() returns (the writer thread's packing, framing and
  writing) and the bytes written per tensor: TensorBoard's format stores every bucket
  between the first and last non-empty one, ~600 of the default edges for 100 normal
  values, so most of that total is writing ~10 KB, the same bytes torch writes.

Histogram rows also carry ``vs_bytes``: the time over an integer sum of the same bytes
(torch.sum of int32 tensors accumulates in int64 through a slow path, ~20x a streaming
read, so ``vs_read`` flatters int32; the bytes row is the honest floor there). At 10^7
elements a float32/16-bit tensor (<= 40 MB) is partly L3-resident between repetitions,
so its read-once time is an L3 read.

For scale: one scalar counter increment per element is the floor of any bucket-counting
kernel; on the machine this was measured on (2 cores, AVX-512 EPYC) that is ~0.19-0.29 ns per
element and core, tbfast's AVX-512 float32 loop with its statistics ~0.31 ns (the table loop
without them ~0.54 ns), its bfloat16 pattern loop ~0.22 ns (benchmarks/micro/
histogram_loops.cpp, one thread), the same computed slot for float64 and the integers
~0.42-0.46 ns (10^7 elements, one thread, through tbfast.histogram).

Correctness is checked first on every input (NumPy's histogram on float64, the float64
softmax computed with libm's exp in the kernel's order).
"""

import math
import os

import numpy as np
import torch

import tbfast

from . import harness

SUITE = "floor"
READ_ONCE = getattr(harness, "READ_ONCE", "read once (torch.sum)")

HIST_LIMITS = {torch.float32: 2.5, torch.bfloat16: 2.5, torch.float16: 2.5, torch.float64: 3.0, torch.int32: 3.0,
               torch.int64: 3.0}


def _threads():
    n = int(os.environ.get("TBFAST_NUM_THREADS") or torch.get_num_threads())
    return n


def _interleaved(fns, repeat, warmup=1):
    """Best and median seconds of each fn, timed in turn: fn0, fn1, ..., fn0, fn1, ..."""
    import gc
    import statistics
    import time

    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [(min(t), statistics.median(t)) for t in times]


def _read(tensors):
    return lambda: [t.sum() for t in tensors]


def _read_bytes(x):
    """Reading x's bytes once as integers (torch.sum of bfloat16 and int32 tensors is not
    a streaming loop on every CPU build; an int32/int64 view of the same memory is)."""
    if x.element_size() == 8:
        v = x.view(torch.int64)
        return lambda: v.sum()
    if (x.numel() * x.element_size()) % 4:
        return lambda: x.sum()
    v = x.view(torch.uint8).view(torch.int32)
    return lambda: v.sum(dtype=torch.int32)


def _name(dtype):
    return str(dtype).replace("torch.", "")


def _sample(dtype, n, gen):
    x = torch.randn(n, generator=gen)
    if dtype.is_floating_point:
        return x.to(dtype)
    return (x * 1000).round_().to(dtype)


def _check_histogram(x):
    """tbfast's counts and statistics equal NumPy's on float64 (first 2*10^6 elements)."""
    x = x[: 2 * 10 ** 6]
    r = tbfast.histogram(x)
    x64 = x.double().numpy()
    fin = x64[np.isfinite(x64)]
    want = np.histogram(fin, bins=tbfast.default_edges())[0]
    if not np.array_equal(r.numpy()[0], want) or (r.min, r.max) != (fin.min(), fin.max()):
        raise AssertionError(f"tbfast histogram of {x.dtype} differs from np.histogram: benchmark aborted")


def _softmax_probs(logits):
    """Float64 softmax in the native kernel's order: max, libm exp(x - max), sequential sum."""
    x = logits.double().numpy()
    m = x.max(axis=1, keepdims=True)
    e = np.array([math.exp(v) for v in (x - m).ravel()]).reshape(x.shape)
    s = e[:, 0].copy()
    for c in range(1, x.shape[1]):
        s += e[:, c]
    return e / s[:, None]


def _check_pr(labels, logits, t, weights):
    n = 20_000
    lab, lg = labels[:n], logits[:n]
    w = None if weights is None else weights[:n]
    got = tbfast.pr_curve(lab, lg, t, weights=w, logits=True).data
    want = tbfast.pr_curve(lab, _softmax_probs(lg), t, weights=w).data
    if not np.array_equal(got, want):
        raise AssertionError("tbfast logits=True curve differs from the float64 softmax: benchmark aborted")


def _model(gen):
    """25 Linear(1100, 1100): 50 parameters, 30.3M values; gradients set like after a step."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(1100, 1100) for _ in range(25)]
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    return model


def run(ctx):
    torch.set_num_threads(_threads())
    gen = torch.Generator().manual_seed(0)
    reps = 5 if ctx.quick else 7
    print(f"  threads: torch {torch.get_num_threads()}, TBFAST_NUM_THREADS "
          f"{os.environ.get('TBFAST_NUM_THREADS', '(default)')}", flush=True)

    # 1. One tensor, default edges, tbfast.histogram (no writer): the kernel and its call.
    sizes = [10 ** 7] if ctx.quick else [10 ** 7, 10 ** 8]
    for n in sizes:
        for dtype, limit in HIST_LIMITS.items():
            x = _sample(dtype, n, gen)
            _check_histogram(x)
            case = f"1e{len(str(n)) - 1} {_name(dtype)}, default bins"
            r = 3 if n >= 10 ** 8 else reps
            (rb, rm), (bb, bm), (tb, tm) = _interleaved([_read([x]), _read_bytes(x), lambda: tbfast.histogram(x)], r)
            ctx.record(SUITE, case, READ_ONCE, rb, median_seconds=rm, size=n)
            ctx.record(SUITE, case, "read once (same bytes, integer sum)", bb, median_seconds=bm)
            ctx.record(SUITE, case, "tbfast.histogram(x)", tb, median_seconds=tm, size=n,
                       vs_read=round(tb / rb, 2), vs_bytes=round(tb / bb, 2), metric="vs_read", limit=limit)
            del x

    # 2. Multi-class PR curves, N=10^6, C=10, T=127, through the writer.
    n, c, t = 10 ** 6, 10, 127
    w = tbfast.SummaryWriter(os.path.join(ctx.logdir, "floor-tbfast"), max_queue=1000)
    logits = torch.randn(n, c, generator=gen) * 2
    probs = torch.softmax(logits, dim=1)
    labels = torch.randint(0, c, (n,), generator=gen)
    weights = torch.rand(n, generator=gen, dtype=torch.float64)
    _check_pr(labels, logits, t, None)
    _check_pr(labels, logits, t, weights)

    def pr(preds, **kw):
        def call():
            w.add_pr_curves("pr", labels, preds, 0, num_thresholds=t, **kw)
            w.flush()
        return call

    base = pr(probs)
    variants = [
        ("logits=True", logits, pr(logits, logits=True)),
        ("weighted [N] float64", probs, pr(probs, weights=weights)),
        ("float16 predictions", probs.half(), pr(probs.half())),
        ("float64 predictions", probs.double(), pr(probs.double())),
    ]
    for label, preds, fn in variants:
        case = f"PR N=1e6 C=10 T=127 {label}"
        extra = [weights] if label.startswith("weighted") else []
        (rb, rm), (bb, bm), (tb, tm) = _interleaved([_read([preds, labels] + extra), base, fn], reps)
        ctx.record(SUITE, case, READ_ONCE, rb, median_seconds=rm)
        ctx.record(SUITE, case, "tbfast add_pr_curves f32 probabilities", bb, median_seconds=bm,
                   vs_read=round(bb / rb, 2))
        ctx.record(SUITE, case, f"tbfast add_pr_curves {label}", tb, median_seconds=tm, vs_read=round(tb / rb, 2),
                   vs_f32=round(tb / bb, 2), metric="vs_f32", limit=2.0)
    w.close()
    del logits, probs, labels, weights

    # 3. A model's parameters and gradients through add_module_histograms (and, in the full
    #    suite, the same model in bfloat16: its 100 tensors of ~1.2M take the pattern path).
    model = _model(gen)
    _model_row(ctx, model, "", 3.0, reps)
    if not ctx.quick:
        _model_row(ctx, model.to(torch.bfloat16), " bfloat16", None, reps)
    del model

    # 4. Per-tensor overhead of add_histograms: many tiny tensors.
    _per_tensor_overhead(ctx, gen, reps)


def _model_row(ctx, model, label, limit, reps):
    tensors = [p for p in model.parameters()] + [p.grad for p in model.parameters()]
    numel = sum(x.numel() for x in tensors)
    case = f"model {len(tensors)} tensors {numel / 1e6:.1f}M values{label} (params+grads)"
    _check_histogram(tensors[0].detach().reshape(-1))
    w = tbfast.SummaryWriter(os.path.join(ctx.logdir, "floor-model" + label.strip()), max_queue=1000)

    def module():
        w.add_module_histograms(model, 0)
        w.flush()

    with torch.no_grad():
        (rb, rm), (tb, tm), (kb, km) = _interleaved(
            [_read(tensors), module, lambda: tbfast.histograms({str(i): x for i, x in enumerate(tensors)})], reps)
    ctx.record(SUITE, case, READ_ONCE, rb, median_seconds=rm, size=numel)
    extra = {} if limit is None else dict(metric="vs_read", limit=limit)
    ctx.record(SUITE, case, "tbfast add_module_histograms", tb, median_seconds=tm, size=numel,
               vs_read=round(tb / rb, 2), **extra)
    ctx.record(SUITE, case, "tbfast.histograms (no writer)", kb, median_seconds=km, size=numel,
               vs_read=round(kb / rb, 2))
    w.close()


def _per_tensor_overhead(ctx, gen, reps):
    import time

    count = 1000
    named = {f"layer{i}/weight": torch.randn(100, generator=gen) for i in range(count)}
    _check_histogram(named["layer0/weight"])
    w = tbfast.SummaryWriter(os.path.join(ctx.logdir, "floor-overhead"), max_queue=0)
    step = [0]
    calls, totals = [], []
    for rep in range(reps + 1):
        size = os.path.getsize(w._get_file_writer().path)
        step[0] += 1
        t0 = time.perf_counter()
        w.add_histograms(named, step[0])
        t1 = time.perf_counter()
        w.flush()
        t2 = time.perf_counter()
        written = os.path.getsize(w._get_file_writer().path) - size
        if rep:  # the first call is the warm-up
            calls.append(t1 - t0)
            totals.append(t2 - t0)
    w.close()
    case = f"add_histograms {count} x 100 float32"
    us = min(calls) / count * 1e6
    ctx.record(SUITE, case, "tbfast add_histograms, calling thread", min(calls), median_seconds=sorted(calls)[len(calls) // 2],
               us_per_tensor=round(us, 2), metric="us_per_tensor", limit=10.0)
    ctx.record(SUITE, case, "tbfast add_histograms + flush (writer thread's packing and writing included)", min(totals),
               median_seconds=sorted(totals)[len(totals) // 2], us_per_tensor=round(min(totals) / count * 1e6, 2),
               bytes_per_tensor=round(written / count))
