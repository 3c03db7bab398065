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
    try:  # which of tbfast's CPU code paths ran (csrc/cpu/simd.h)
        from tbfast import _native

        mod = _native.cpu()[0]
        info["tbfast_simd"] = mod.cpu_simd_level() if mod is not None else None
    except Exception:
        info["tbfast_simd"] = None
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


READ_ONCE = "read once (torch.sum)"


class Context:
    """Passed to each suite's ``run``: mode, output places, and the result rows.

    Every case can time reading its data once (:meth:`read_once`: ``torch.sum`` of each
    input, same thread count, same run); :func:`annotate_read_once` then gives every row of
    that case ``vs_read`` = its time / the read-once time, the figure that compares across
    machines (speed-ups against peers vary between VMs of one kind)."""

    def __init__(self, quick, logdir, outdir):
        self.quick = quick
        self.logdir = logdir
        self.outdir = outdir
        self.rows = []
        self._t0 = time.perf_counter()
        self._suite_rows = {}

    def record(self, suite, case, impl, seconds, **extra):
        row = {"suite": suite, "case": case, "impl": impl, "seconds": seconds, **extra}
        self.rows.append(row)
        k = self._suite_rows[suite] = self._suite_rows.get(suite, 0) + 1
        print(f"  [{time.perf_counter() - self._t0:6.1f}s {suite} #{k:02d}] {case:44s} {impl:34s} "
              f"{seconds * 1e3:10.3f} ms" + "".join(f"  {k}={v}" for k, v in extra.items()), flush=True)
        return row

    def time(self, suite, case, impl, fn, repeat=5, warmup=1, **extra):
        """Time ``fn`` and record its best time (median kept too)."""
        best, median = time_call(fn, repeat=repeat, warmup=warmup)
        return self.record(suite, case, impl, best, median_seconds=median, **extra)

    def read_once(self, suite, case, *tensors, **extra):
        """Record the time to read the case's data once: torch.sum of each tensor (NumPy
        arrays are viewed as tensors), on the same threads as everything else."""
        import torch

        ts = [_read_view(torch.from_numpy(t) if not isinstance(t, torch.Tensor) else t) for t in tensors]
        return self.time(suite, case, READ_ONCE, lambda: [t.sum() for t in ts], repeat=7, **extra)


def _read_view(t):
    """``t`` for torch.sum, except 1-byte dtypes (bool, uint8, int8), whose torch reductions
    are scalar loops 50x slower than reading the bytes: their bytes viewed as float32 words."""
    import torch

    if t.element_size() == 1 and t.is_contiguous() and t.numel() % 4 == 0:
        return t.view(torch.uint8).view(torch.float32)
    return t


def annotate_read_once(rows):
    """Add ``vs_read`` (time / read-once time of the same suite and case) to every row."""
    floor = {(r["suite"], r["case"]): r["seconds"] for r in rows if r["impl"] == READ_ONCE}
    for r in rows:
        f = floor.get((r["suite"], r["case"]))
        if f and r["seconds"] > 0 and r["impl"] != READ_ONCE:
            r["vs_read"] = round(r["seconds"] / f, 2)


def plot_suites(rows, outdir, prefix=""):
    """One log-log PNG per suite: time against size for tbfast and each peer (rows with a
    ``size``; an implementation needs two sizes to get a line), the read-once time dashed.
    Returns the paths written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib not importable: no plots")
        return []
    paths = []
    for suite in sorted({r["suite"] for r in rows}):
        series = {}
        for r in rows:
            if r["suite"] == suite and r.get("size") and r["seconds"] > 0:
                series.setdefault(r["impl"], []).append((r["size"], r["seconds"]))
        series = {k: sorted(v) for k, v in series.items() if len({s for s, _ in v}) >= 2}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        for impl, pts in sorted(series.items()):
            xs, ys = zip(*pts)
            style = dict(color="black", linestyle="--", linewidth=2) if impl == READ_ONCE else dict(marker="o")
            if impl.startswith("tbfast") and impl != READ_ONCE:
                style["linewidth"] = 2.5
            ax.plot(xs, ys, label=impl, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements")
        ax.set_ylabel("seconds (best of several)")
        ax.set_title(f"{suite}: time against size (read once = torch.sum of the same data)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        path = os.path.join(outdir, f"{prefix}{suite}.png")
        os.makedirs(outdir, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


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
