"""Shared benchmark plumbing: timing, machine description, result rows, table and JSON.

A suite is a module ``benchmarks/bench_<name>.py`` with ``run(ctx)`` that checks
correctness first (raising on a mismatch) and then records timings with ``ctx.time`` /
``ctx.record``. Peers are timed side by side with tbfast in the same run.
"""

import datetime
import gc
import json
import os
import platform
import socket
import statistics
import sys
import time


def machine():
    """Description of the machine the numbers come from."""
    info = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for mod in ("numpy", "torch", "numba", "tensorboard", "tensorboardX", "google.protobuf"):
        try:
            info[mod] = __import__(mod, fromlist=["__version__"]).__version__
        except Exception:  # optional peers
            info[mod] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def time_call(fn, repeat=5, warmup=1, min_total=0.0, sync=None):
    """Best and median wall time (seconds) of ``fn()`` over ``repeat`` runs after
    ``warmup`` runs; ``sync`` (e.g. torch.cuda.synchronize) runs before each clock read."""
    for _ in range(warmup):
        fn()
    times = []
    start_all = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start_all < min_total:
        gc.collect()
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    return min(times), statistics.median(times)


class Context:
    """Passed to each suite's ``run``: mode, output places, and the result rows."""

    def __init__(self, quick, logdir, outdir):
        self.quick = quick
        self.logdir = logdir
        self.outdir = outdir
        self.rows = []

    def record(self, suite, case, impl, seconds, **extra):
        row = {"suite": suite, "case": case, "impl": impl, "seconds": seconds, **extra}
        self.rows.append(row)
        print(f"  {suite:10s} {case:44s} {impl:28s} {seconds * 1e3:10.3f} ms"
              + "".join(f"  {k}={v}" for k, v in extra.items()), flush=True)
        return row

    def time(self, suite, case, impl, fn, repeat=5, warmup=1, **extra):
        """Time ``fn`` and record its best time (median kept too)."""
        best, median = time_call(fn, repeat=repeat, warmup=warmup)
        return self.record(suite, case, impl, best, median_seconds=median, **extra)


def speedups(rows, base_impl_prefix, fast_impl_prefix):
    """{case: base_time / fast_time} for rows of the same suite and case."""
    out = {}
    by_case = {}
    for r in rows:
        by_case.setdefault((r["suite"], r["case"]), []).append(r)
    for (suite, case), rs in by_case.items():
        base = [r for r in rs if r["impl"].startswith(base_impl_prefix)]
        fast = [r for r in rs if r["impl"].startswith(fast_impl_prefix)]
        if base and fast:
            out[(suite, case)] = base[0]["seconds"] / fast[0]["seconds"]
    return out


def write_json(path, ctx, mode):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), "mode": mode, "rows": ctx.rows}, f, indent=1)


def writers(ctx, name):
    """{'torch', 'tensorboardX' (if importable), 'tbfast'}: SummaryWriters of the three
    libraries, each into its own run directory ``<ctx.logdir>/<name>-<library>``."""
    import tbfast
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    ws = {"torch": TorchWriter(os.path.join(ctx.logdir, f"{name}-torch"), max_queue=1000)}
    try:
        import tensorboardX

        ws["tensorboardX"] = tensorboardX.SummaryWriter(os.path.join(ctx.logdir, f"{name}-tensorboardX"),
                                                        max_queue=1000)
    except ImportError:
        print("  tensorboardX not importable: skipped")
    ws["tbfast"] = tbfast.SummaryWriter(os.path.join(ctx.logdir, f"{name}-tbfast"), max_queue=1000)
    return ws
