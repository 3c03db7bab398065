"""Worker for the group= tests in tests/test_gpu.py: ``python gpu_dist_worker.py DEVICE
WORLD PORT OUTDIR`` runs WORLD processes on 127.0.0.1: with DEVICE ``cuda`` one per GPU
over NCCL, with ``cpu`` over gloo (the same cases, checkable without a GPU). Each rank:

* reduces histograms with ``group=`` (DTensor shards and plain parts, every bins mode)
  and sharded PR-curve accumulators (weighted batches on every rank but the last, whose
  batch is unweighted; with one process that rank saw no batch at all), on CUDA
  under ``torch.cuda.set_sync_debug_mode("error")``, so any host sync before the single
  copy to the host raises;
* then reads the results and pickles them to OUTDIR/rank<r>.pkl, with the full tensors,
  for the test to compare against the CPU native backend on one process.

A rank that fails writes its traceback to OUTDIR/rank<r>.err and exits with 1."""

import datetime
import os
import pickle
import sys
import traceback

import numpy as np
import torch
import torch.distributed as dist

SEED = 99
BINS = ("tensorflow", 23, [-4.0, -1.0, 0.0, 0.5, 3.0])


def full_tensors():
    g = torch.Generator().manual_seed(SEED)
    a = torch.randn(1001, 37, generator=g) * 2  # uneven over 2 ranks
    a[3, 4] = float("nan")
    a[7, 1] = float("-inf")
    return {"a": a, "b": (torch.randn(50, 300, generator=g) * 10).to(torch.bfloat16),
            "tiny": torch.randn(1, 5, generator=g)}  # an empty shard on rank 1


def pr_data(rank, world):
    g = torch.Generator().manual_seed(SEED + 1)
    pred = torch.rand(20000, 5, generator=g)
    labels = torch.randint(0, 5, (20000,), generator=g)
    weights = torch.rand(20000, generator=g)
    part = slice(rank * 20000 // world, (rank + 1) * 20000 // world)
    return (pred, labels, weights), (pred[part], labels[part], weights[part])


def run(rank, device, world, port, outdir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = device == "cuda"
    timeout = datetime.timedelta(seconds=120)
    if cuda:
        torch.cuda.set_device(rank)
        dist.init_process_group("nccl", rank=rank, world_size=world, timeout=timeout,
                                device_id=torch.device("cuda", rank))
    else:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timeout)
    import tbfast
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh(device, (world,))
    full = full_tensors()
    named = {n: distribute_tensor(t.to(device), mesh, [Shard(0)]) for n, t in full.items()}
    part = torch.arange(rank * 10, rank * 10 + 10, dtype=torch.float32, device=device)
    _, (pred, labels, weights) = pr_data(rank, world)
    pred, labels, weights = pred.to(device), labels.to(device), weights.to(device)
    for bins in BINS:  # warm-up: device constants uploaded once
        tbfast.histograms(named, bins=bins, group=True)
    tbfast.histograms({"part": part}, bins=5, group=True)
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()

    if cuda:
        torch.cuda.set_sync_debug_mode("error")
    pending = {}
    for bins in BINS:
        pending[str(bins)] = tbfast.histograms(named, bins=bins, group=True)
    pending["parts"] = tbfast.histograms({"part": part}, bins=5, group=True)
    acc = tbfast.PRCurveAccumulator(num_thresholds=201, num_classes=5)
    acc.update(pred, labels)
    acc.sync()
    wacc = tbfast.PRCurveAccumulator(num_thresholds=33, num_classes=5)
    if rank != world - 1:
        wacc.update(pred, labels, weights)
    elif world > 1:  # unweighted beside weighted ranks (one process: a rank without any batch)
        wacc.update(pred, labels)
    wacc.sync()
    curves = (acc.snapshot(), wacc.snapshot())
    if cuda:
        torch.cuda.set_sync_debug_mode("default")

    res = {"full": full, "hist": {}, "pr": [c.numpy() for c in curves]}
    for key, results in pending.items():
        res["hist"][key] = {n: tuple(np.asarray(a).tolist() for a in r.host()) + (r.num,) for n, r in results.items()}
    with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(res, f)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # results are on disk: skip interpreter finalization, where torch's gloo teardown can abort


def main(rank, device, world, port, outdir):
    try:
        run(rank, device, world, port, outdir)
    except BaseException:
        with open(os.path.join(outdir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        sys.exit(1)


if __name__ == "__main__":
    import torch.multiprocessing as mp

    device, world, port, outdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    mp.spawn(main, args=(device, world, port, outdir), nprocs=world, join=True)
