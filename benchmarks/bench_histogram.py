"""Histogram suite: tbfast vs torch.utils.tensorboard, tensorboardX, np.histogram and
torch.histc on the same tensors, in one run. Correctness is checked first."""

import numpy as np
import torch

import tbfast
from tbfast.histogram_logging import histogram_result_proto

from . import harness

SUITE = "histogram"


def _check(x):
    """tbfast's proto equals torch's make_histogram for x (raises otherwise)."""
    from torch.utils.tensorboard.summary import histogram as torch_histogram

    theirs = torch_histogram("x", x, tbfast.default_edges().tolist()).value[0].histo
    ours = histogram_result_proto(tbfast.histogram(x))
    if list(ours.bucket) != list(theirs.bucket) or list(ours.bucket_limit) != list(theirs.bucket_limit):
        raise AssertionError("tbfast histogram differs from torch's: benchmark aborted")
    if (ours.min, ours.max, ours.num) != (theirs.min, theirs.max, theirs.num):
        raise AssertionError("tbfast histogram statistics differ from torch's")


def run(ctx):
    gen = torch.Generator().manual_seed(0)
    sizes = [10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7] + ([] if ctx.quick else [10 ** 8])
    _check(torch.randn(100_003, generator=gen))
    ws = harness.writers(ctx, "histogram")
    edges = tbfast.default_edges()
    step = [0]

    def add(w, tag, x):
        # every writer flushed: tbfast packs on its writer thread, so the call alone
        # would not include the work
        step[0] += 1
        w.add_histogram(tag, x, step[0])
        w.flush()

    # 1. One tensor, default bins, end to end (summary built and queued to the writer).
    for n in sizes:
        x = torch.randn(n, generator=gen)
        case = f"1e{len(str(n)) - 1} float32, default bins"
        reps = 3 if n >= 10 ** 7 else 5
        ctx.read_once(SUITE, case, x, size=n)
        for name, w in ws.items():
            ctx.time(SUITE, case, f"{name} add_histogram", lambda: add(w, "x", x), repeat=reps, size=n)
        ctx.time(SUITE, case, "np.histogram(x, default edges)", lambda: np.histogram(x.numpy(), bins=edges),
                 repeat=reps, size=n)
        ctx.time(SUITE, case, "tbfast.histogram(x)", lambda: tbfast.histogram(x), repeat=reps, size=n)
        if n == 10 ** 7:
            case100 = "1e7 float32, 100 bins"
            ctx.read_once(SUITE, case100, x)
            ctx.time(SUITE, case100, "torch.histc(x, 100)", lambda: torch.histc(x, 100), repeat=reps)
            ctx.time(SUITE, case100, "tbfast.histogram(x, 100)", lambda: tbfast.histogram(x, bins=100), repeat=reps)
            ctx.time(SUITE, case100, "np.histogram(x, 100)", lambda: np.histogram(x.numpy(), bins=100), repeat=reps)
        del x

    # 2. Other dtypes at 10^6 (torch converts bf16 to fp16 first; tbfast reads bf16 as is).
    for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.int32):
        x = (torch.randn(10 ** 6, generator=gen) * 100).to(dtype)
        case = f"1e6 {str(dtype).replace('torch.', '')}, default bins"
        ctx.read_once(SUITE, case, x)
        for name, w in ws.items():
            if name == "tensorboardX" and dtype == torch.bfloat16:
                continue  # tensorboardX cannot convert bf16 to NumPy
            ctx.time(SUITE, case, f"{name} add_histogram", lambda: add(w, "x_" + str(dtype), x))

    # 3. A model's worth of tensors: 200 x 10^5.
    named = {f"layer{i}/weight": torch.randn(10 ** 5, generator=gen) for i in range(200)}
    case = "200 x 1e5 float32, default bins"
    ctx.read_once(SUITE, case, *named.values())

    def loop(w):
        step[0] += 1
        for tag, t in named.items():
            w.add_histogram(tag, t, step[0])
        w.flush()

    for name in ("torch", "tensorboardX"):
        if name in ws:
            ctx.time(SUITE, case, f"{name} add_histogram x200", lambda: loop(ws[name]), repeat=3)
    ctx.time(SUITE, case, "tbfast add_histogram x200", lambda: loop(ws["tbfast"]), repeat=3)

    def batched():
        step[0] += 1
        ws["tbfast"].add_histograms(named, step[0])
        ws["tbfast"].flush()

    ctx.time(SUITE, case, "tbfast add_histograms", batched, repeat=5)
    for w in ws.values():
        w.close()
