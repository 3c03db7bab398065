"""Distributed suite: a sharded model's parameters histogrammed over torch.distributed.
Two processes on 127.0.0.1 (gloo on CPU; NCCL on 2 GPUs when the machine has them) each
hold half of a transformer-shaped model (DTensor Shard(0) parameters); the suite times
the local compute (each rank's shards, no group) next to the whole call with group=
(global range for int bins, one all_gather of the packed result, reduction on the
device). Correctness first: the reduced histograms equal a single process's on the full
tensors.

Run by the harness (``python -m benchmarks --only distributed``), which spawns the workers.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from .harness import READ_ONCE

SUITE = "distributed"


def _shapes(total, d=1024):
    """Transformer-shaped parameter shapes (attention, MLP, norms per layer; 12 d^2 + 2 d
    elements) adding up to about ``total`` elements."""
    layer = ((d, d), (d, d), (d, d), (d, d), (4 * d, d), (d, 4 * d), (d,), (d,))
    per_layer = 12 * d * d + 2 * d
    return [s for _ in range(max(1, round(total / per_layer))) for s in layer]


def _worker(rank, world, port, out, total, backend):
    import torch
    import torch.distributed as dist

    # one thread per rank for torch and tbfast alike (2 ranks on this machine's 2 cores):
    # oversubscribed ranks made the quick run's times noise (a reduction "faster" than nothing)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TBFAST_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group(backend, rank=rank, world_size=world)
    import tbfast
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    device = "cuda" if backend == "nccl" else "cpu"
    if device == "cuda":
        torch.cuda.set_device(rank)
    mesh = init_device_mesh(device, (world,))
    g = torch.Generator().manual_seed(0)
    full = {f"p{i}": torch.randn(s, generator=g) * 0.02 for i, s in enumerate(_shapes(total))}
    named = {k: distribute_tensor(v.to(device), mesh, [Shard(0)]) for k, v in full.items()}
    local = {k: v.to_local() for k, v in named.items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for bins in ("tensorflow", 64):
        ref = None
        if rank == 0 and bins == "tensorflow":  # correctness: a few tensors against one process
            few = list(full)[:3]
            got = tbfast.histograms({k: named[k] for k in few}, bins=bins, group=True)
            want = tbfast.histograms({k: full[k] for k in few}, bins=bins)
            for k in few:
                if got[k].numpy()[0].tolist() != want[k].numpy()[0].tolist():
                    raise AssertionError(f"reduced histogram of {k} differs from the single-process one")
        elif bins == "tensorflow":
            tbfast.histograms({k: named[k] for k in list(full)[:3]}, bins=bins, group=True)
        del ref
        times = {"read": [], "local": [], "group": []}
        for _ in range(8):
            for kind in times:
                dist.barrier()
                sync()
                t0 = time.perf_counter()
                if kind == "read":  # reading the local shards once, both ranks at once, like the others
                    [v.sum() for v in local.values()]
                else:
                    res = tbfast.histograms(local, bins=bins) if kind == "local" else tbfast.histograms(
                        named, bins=bins, group=True)
                    next(iter(res.values())).batch.host()  # the result on the host, reduced
                sync()
                times[kind].append(time.perf_counter() - t0)
        rows.append({"bins": str(bins), **{kind: min(t[1:]) for kind, t in times.items()}})
    if rank == 0:
        n = sum(v.numel() for v in full.values())
        with open(out, "w") as f:
            json.dump({"params": n, "tensors": len(full), "rows": rows, "backend": backend}, f)
    dist.barrier()  # both ranks done before the group goes away (gloo aborts a rank torn down early)
    dist.destroy_process_group()
    os._exit(0)  # results are on disk: skip interpreter finalization, where torch's gloo teardown can abort


def run(ctx):
    import torch

    backends = ["gloo"] + (["nccl"] if torch.cuda.is_available() and torch.cuda.device_count() >= 2 else [])
    if "nccl" not in backends:
        print("  NCCL case skipped: needs 2 GPUs")
    total = 20_000_000 if ctx.quick else 100_000_000
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "result.json")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            code = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); import torch.multiprocessing as mp; "
                    f"from benchmarks.bench_distributed import _worker; "
                    f"mp.spawn(_worker, args=(2, {port}, {out!r}, {total}, {backend!r}), nprocs=2)")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"distributed benchmark workers failed:\n{proc.stderr[-3000:]}")
            with open(out) as f:
                res = json.load(f)
        case = f"{res['params'] / 1e6:.0f}M params, {res['tensors']} tensors, 2 ranks ({backend})"
        for r in res["rows"]:
            c = f"{case}, bins={r['bins']}"
            ctx.record(SUITE, c, READ_ONCE, r["read"])
            ctx.record(SUITE, c, "local shards, no group (per rank)", r["local"])
            ctx.record(SUITE, c, "group= (local + reduction)", r["group"],
                       reduction_ms=round((r["group"] - r["local"]) * 1e3, 2))
