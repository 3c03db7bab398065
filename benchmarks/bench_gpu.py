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
    for w in ws.values():
        w.close()
