"""GPU suite (skipped without a CUDA device): tbfast's CUDA histograms side by side with
torch's add_histogram, torch.histc and a device-to-device copy of the same tensor (the
bandwidth floor), in one run; a 1B-parameter transformer-shaped model's parameters and
gradients in bfloat16 through add_module_histograms against a torch add_histogram loop
and a torch.histc-per-tensor loop. Reports kernel launches and host syncs per call.
Correctness first: the CUDA result must equal the CPU native backend's.

Device times are measured with CUDA events around the work (median of several runs
after warm-up, inputs rotated where they would fit in L2); "call" rows are the time the
training thread spends in the call, without waiting for the device.
"""

import time
import warnings

import numpy as np
import torch

import tbfast

from . import harness

SUITE = "gpu"


def _device_time(fn, repeat=10, warmup=2):
    """Median device time (s) of fn() between two CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times)), min(times)


def _host_time(fn, repeat=5, warmup=1):
    """Median wall time (s) of fn() with the device drained before and after."""
    best, median = harness.time_call(fn, repeat=repeat, warmup=warmup, sync=torch.cuda.synchronize)
    return median, best


def _call_time(fn, repeat=10):
    """Median time (s) the calling thread spends in fn(), the device not drained after."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    return float(np.median(times))


def _syncs_and_launches(fn):
    """(host syncs, CUDA kernel launches) of one fn() call: syncs counted by torch's
    sync debug mode, kernels by the profiler."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    launches = sum(1 for e in prof.events() if e.device_type.name == "CUDA" and "Memcpy" not in e.name
                   and "Memset" not in e.name)
    return syncs, launches


def _check(x):
    cpu = tbfast.histogram(x.cpu(), backend="native").host()
    gpu = tbfast.histogram(x).host()
    if not (np.array_equal(cpu[0], gpu[0]) and np.array_equal(cpu[1], gpu[1]) and np.array_equal(cpu[3], gpu[3])):
        raise AssertionError("CUDA histogram differs from the CPU native backend: benchmark aborted")


class _Model(torch.nn.Module):
    """Transformer-shaped parameters: embeddings and per layer attention (4 d^2), MLP
    (8 d^2) and norms, in bfloat16."""

    def __init__(self, layers, d, vocab):
        super().__init__()
        self.embed = torch.nn.Parameter(torch.empty(vocab, d, dtype=torch.bfloat16, device="cuda"))
        self.blocks = torch.nn.ModuleList()
        for _ in range(layers):
            blk = torch.nn.Module()
            for name, shape in (("q", (d, d)), ("k", (d, d)), ("v", (d, d)), ("o", (d, d)), ("up", (4 * d, d)),
                                ("down", (d, 4 * d)), ("norm1", (d,)), ("norm2", (d,))):
                setattr(blk, name, torch.nn.Parameter(torch.empty(shape, dtype=torch.bfloat16, device="cuda")))
            self.blocks.append(blk)
        for p in self.parameters():
            p.data.normal_(0, 0.02)
            p.grad = torch.randn_like(p) * 1e-3


def run(ctx):
    if not torch.cuda.is_available():
        print("  gpu suite skipped: torch.cuda.is_available() is False")
        return
    name = torch.cuda.get_device_name()
    print(f"  device: {name}", flush=True)
    _check(torch.randn(3 << 20, device="cuda"))
    _check(torch.randn(1 << 20, device="cuda").bfloat16())
    ws = harness.writers(ctx, "gpu")
    step = [0]

    def add(w, x):
        step[0] += 1
        w.add_histogram("x", x, step[0])

    # 1. One tensor: kernel vs copy vs histc vs torch's add_histogram.
    for log2n in ([24, 28] if not ctx.quick else [24, 28]):
        n = 1 << log2n
        for dtype in (torch.float32, torch.bfloat16):
            dname = str(dtype)[6:]
            case = f"2^{log2n} {dname}, default bins"
            xs = [torch.randn(n, device="cuda").to(dtype) for _ in range(2 if log2n >= 28 else 4)]
            k = [0]

            def nxt():
                k[0] = (k[0] + 1) % len(xs)
                return xs[k[0]]

            y = torch.empty_like(xs[0])
            copy, _ = _device_time(lambda: y.copy_(nxt()))
            ctx.record(SUITE, case, "device-to-device copy (floor)", copy, gb_per_s=round(2 * xs[0].nbytes / copy / 1e9))
            t, _ = _device_time(lambda: tbfast.histogram(nxt()))
            ctx.record(SUITE, case, "tbfast.histogram (device time)", t, vs_copy=round(t / copy, 2))
            call = _call_time(lambda: add(ws["tbfast"], nxt()))
            ctx.record(SUITE, case, "tbfast add_histogram (call, no wait)", call)
            syncs, launches = _syncs_and_launches(lambda: add(ws["tbfast"], xs[0]))
            ctx.record(SUITE, case, "tbfast add_histogram syncs/launches", 0.0, host_syncs=syncs, launches=launches)
            xf = [x.float() for x in xs] if dtype != torch.float32 else xs
            hc, _ = _device_time(lambda: torch.histc(xf[k[0]], 100))
            ctx.record(SUITE, case, "torch.histc(x, 100)" + ("" if dtype == torch.float32 else " on float32 copy"),
                       hc, vs_copy=round(hc / copy, 2))
            del xf
            if log2n <= 24 or not ctx.quick:
                tt, _ = _host_time(lambda: add(ws["torch"], xs[0]), repeat=1 if log2n >= 28 else 3, warmup=0)
                ctx.record(SUITE, case, "torch add_histogram", tt, vs_copy=round(tt / copy, 1))
            else:  # quick mode: 2^28 through numpy takes tens of seconds; scaled from 2^26, labelled
                part = xs[0][: 1 << 26]
                tt, _ = _host_time(lambda: add(ws["torch"], part), repeat=1, warmup=0)
                ctx.record(SUITE, case, "torch add_histogram (2^26 x4, extrapolated)", 4 * tt,
                           vs_copy=round(4 * tt / copy, 1), extrapolated=True)
            del xs, y

    # 2. A 1B-parameter transformer-shaped model, bfloat16 parameters and gradients.
    layers, d = (16, 2048) if ctx.quick else (20, 2048)
    model = _Model(layers, d, 32000)
    params = list(model.parameters())
    numel = sum(p.numel() for p in params)
    case = f"model {numel / 1e9:.2f}B params bf16, params+grads ({2 * len(params)} tensors)"
    srcs = [p.data for p in params] + [p.grad for p in params]
    dsts = [torch.empty_like(s) for s in srcs]
    copy, _ = _device_time(lambda: torch._foreach_copy_(dsts, srcs), repeat=5)
    ctx.record(SUITE, case, "copy of every tensor (floor)", copy)
    del dsts
    named = [(f"p/{i}", s) for i, s in enumerate(srcs)]
    t, _ = _device_time(lambda: tbfast.histograms(named), repeat=5)
    ctx.record(SUITE, case, "tbfast.histograms (device time)", t, vs_copy=round(t / copy, 2))

    def module_hist():
        step[0] += 1
        ws["tbfast"].add_module_histograms(model, step[0])

    call = _call_time(module_hist, repeat=5)
    ctx.record(SUITE, case, "tbfast add_module_histograms (call, no wait)", call)
    syncs, launches = _syncs_and_launches(module_hist)
    ctx.record(SUITE, case, "tbfast add_module_histograms syncs/launches", 0.0, host_syncs=syncs,
               launches=launches)

    def histc_loop():
        for s in srcs:
            torch.histc(s.float(), 64)  # wandb's way: upcast, range from the data (syncs)

    hl, _ = _host_time(histc_loop, repeat=2, warmup=1)
    ctx.record(SUITE, case, "torch.histc per tensor (float copy)", hl, vs_copy=round(hl / copy, 1))
    sample = srcs[1:5]  # torch's add_histogram loop, measured on 4 tensors, scaled by elements
    frac = sum(s.numel() for s in sample) / (2 * numel)

    def torch_loop():
        step[0] += 1
        for i, s in enumerate(sample):
            ws["torch"].add_histogram(f"p/{i}", s.float(), step[0])

    tl, _ = _host_time(torch_loop, repeat=1, warmup=0)
    ctx.record(SUITE, case, "torch add_histogram loop (extrapolated from 4 tensors)", tl / frac,
               vs_copy=round(tl / frac / copy, 1), extrapolated=True)
    _pr_curves(ctx, ws, step)
    _images(ctx, ws, step)
    for w in ws.values():
        w.close()


def _peak_extra_memory(fn):
    """Peak device memory (bytes) allocated by fn() beyond what was allocated before."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _pr_curves(ctx, ws, step):
    """Binary N=10^8 and multi-class N=10^7 x C=100 PR curves against torch's writer,
    torchmetrics and the read-once floor (a copy of the predictions and labels)."""
    try:
        import torchmetrics.classification as tmc
    except ImportError:
        tmc = None
        print("  torchmetrics not importable: its rows are skipped")
    n = 10 ** 8
    preds = torch.rand(n, device="cuda")
    labels = torch.rand(n, device="cuda") < 0.3
    p2, l2 = torch.empty_like(preds), torch.empty_like(labels)
    copy, _ = _device_time(lambda: (p2.copy_(preds), l2.copy_(labels)), repeat=5)
    for T in (127, 10001):
        case = f"binary PR N=1e8 f32, bool labels, T={T}"
        ctx.record(SUITE, case, "copy of predictions + labels (floor)", copy)
        t, _ = _device_time(lambda: tbfast.pr_curve(labels, preds, T), repeat=5)
        ctx.record(SUITE, case, "tbfast.pr_curve (device time)", t, vs_copy=round(t / copy, 2))
        call = _call_time(lambda: ws["tbfast"].add_pr_curve("pr", labels, preds, 0, num_thresholds=T), repeat=5)
        ctx.record(SUITE, case, "tbfast add_pr_curve (call, no wait)", call)
        syncs, launches = _syncs_and_launches(lambda: ws["tbfast"].add_pr_curve("pr", labels, preds, 0,
                                                                                num_thresholds=T))
        ctx.record(SUITE, case, "tbfast add_pr_curve syncs/launches", 0.0, host_syncs=syncs, launches=launches)
        sub = 10 ** 7  # torch's writer on the CPU, measured on 10^7 and scaled by 10, labelled
        tt, _ = _host_time(lambda: ws["torch"].add_pr_curve("pr", labels[:sub], preds[:sub], 0,
                                                            num_thresholds=min(T, 127)), repeat=1, warmup=0)
        ctx.record(SUITE, case, "torch add_pr_curve (1e7 x10, extrapolated; T capped at 127)", 10 * tt,
                   extrapolated=True)
        if tmc is not None:
            m = tmc.BinaryPrecisionRecallCurve(thresholds=T).cuda()
            size = n if T <= 127 else 10 ** 6
            scale = n // size

            def tm():
                m.reset()
                m.update(preds[:size], labels[:size].long())
                m.compute()

            tt, _ = _host_time(tm, repeat=1, warmup=1)
            label = "torchmetrics BinaryPrecisionRecallCurve" + (f" (1e6 x{scale}, extrapolated)" if scale > 1 else "")
            ctx.record(SUITE, case, label, tt * scale, extrapolated=scale > 1)
    del preds, labels, p2, l2

    n, C, T = 10 ** 7, 100, 201
    case = f"multiclass PR N=1e7 C=100 T={T}"
    g = torch.Generator(device="cuda").manual_seed(0)
    preds = torch.rand(n, C, device="cuda", generator=g)
    labels = torch.randint(0, C, (n,), device="cuda", generator=g)
    p2, l2 = torch.empty_like(preds), torch.empty_like(labels)
    copy, _ = _device_time(lambda: (p2.copy_(preds), l2.copy_(labels)), repeat=5)
    del p2, l2
    ctx.record(SUITE, case, "copy of predictions + labels (floor)", copy)
    t, _ = _device_time(lambda: tbfast.pr_curve(labels, preds, T, mode="multiclass"), repeat=5)
    ctx.record(SUITE, case, "tbfast.pr_curve (device time)", t, vs_copy=round(t / copy, 2))
    acc = tbfast.PRCurveAccumulator(T, num_classes=C)
    acc.update(preds[:1000], labels[:1000])
    extra = _peak_extra_memory(lambda: acc.update(preds, labels))
    ctx.record(SUITE, case, "PRCurveAccumulator.update peak extra memory", 0.0, peak_extra_mb=round(extra / 2**20, 2),
               state_mb=round(C * T * 2 * 8 / 2**20, 2))
    sub = 10 ** 6  # torch: one add_pr_curve per class, 2 classes on 1e6, scaled, labelled
    tt, _ = _host_time(lambda: [ws["torch"].add_pr_curve(f"c{c}", labels[:sub] == c, preds[:sub, c], 0)
                                for c in range(2)], repeat=1, warmup=0)
    ctx.record(SUITE, case, "torch add_pr_curve x100 (2 classes on 1e6, extrapolated)", tt * 50 * 10,
               extrapolated=True)
    if tmc is not None:
        m = tmc.MulticlassPrecisionRecallCurve(num_classes=C, thresholds=T).cuda()
        size = 10 ** 6

        def tm():
            m.reset()
            m.update(preds[:size], labels[:size])
            m.compute()

        tm()
        extra = _peak_extra_memory(tm)
        tt, _ = _host_time(tm, repeat=1, warmup=0)
        ctx.record(SUITE, case, "torchmetrics MulticlassPrecisionRecallCurve (1e6 x10, extrapolated)", tt * 10,
                   extrapolated=True, peak_extra_mb_at_1e6=round(extra / 2**20, 1))


def _images(ctx, ws, step):
    x = torch.rand(64, 3, 256, 256, device="cuda")
    case = "add_images 64x3x256x256 float32"
    t, _ = _host_time(lambda: (ws["tbfast"].add_images("imgs", x, 0), ws["tbfast"].flush()), repeat=3)
    ctx.record(SUITE, case, "tbfast add_images (until written)", t)
    call = _call_time(lambda: ws["tbfast"].add_images("imgs", x, 0), repeat=5)
    ctx.record(SUITE, case, "tbfast add_images (call, no wait)", call)
    tt, _ = _host_time(lambda: (ws["torch"].add_images("imgs", x, 0), ws["torch"].flush()), repeat=3)
    ctx.record(SUITE, case, "torch add_images (until written)", tt)
    g, _ = _device_time(lambda: tbfast.image_grid(x, nrow=8, padding=0), repeat=10)
    ctx.record(SUITE, case, "tbfast.image_grid (device time)", g)
