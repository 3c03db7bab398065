"""Worker for tests/test_distributed.py: ``python dist_worker.py WORLD PORT OUTDIR`` spawns
WORLD gloo processes on 127.0.0.1 that run every distributed case and pickle their
results to OUTDIR/rank<r>.pkl; rank 0 also writes event files under OUTDIR/runs."""

import datetime
import os
import pickle
import sys

import torch
import torch.distributed as dist

SEED = 1234
PR_SCENARIOS = ("mixed", "mixed_empty0", "empty0")


def full_tensors():
    """The logical tensors every case shards (same on every rank: seeded)."""
    g = torch.Generator().manual_seed(SEED)
    a = torch.randn(13, 7, generator=g) * 3  # uneven over 2 and 4 ranks
    a[2, 3] = float("nan")
    a[5, 1] = float("inf")
    return {
        "a": a,
        "b": (torch.randn(6, 10, generator=g) * 100).to(torch.bfloat16),
        "small": torch.randn(3, 5, generator=g),  # fewer rows than 4 ranks: an empty local shard
        "ints": torch.randint(-50, 50, (40,), generator=g, dtype=torch.int32),
    }


def fsdp1_flat_model():
    """The model of the FSDP1 ``use_orig_params=False`` case, as built before wrapping:
    units of 15 and 9 elements, so 2 and 4 ranks get padded shards."""
    torch.manual_seed(SEED)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),
                               torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False)))


def fsdp1_flat_input():
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(7))  # the same batch on every rank


def pr_roles(world, scenario):
    """What each rank saw in a PR scenario: no batch, weighted or unweighted batches."""
    roles = ["unweighted"] * world
    if scenario == "mixed":
        roles[0], roles[-1] = "weighted", "empty"
    elif scenario == "mixed_empty0":
        roles[0], roles[-1] = "empty", "weighted"
    else:
        roles[0] = "empty"
    return roles


def pr_accumulator(world, scenario, ranks):
    """A PRCurveAccumulator fed the batches the given ``ranks`` see in ``scenario``, in
    rank order. Weights are multiples of 1/4, so weighted sums are exact in any order."""
    import tbfast

    g = torch.Generator().manual_seed(SEED + 1)
    n = 1001
    preds, labels = torch.rand(n, 5, generator=g), torch.randint(0, 5, (n,), generator=g)
    weights = torch.randint(0, 9, (n,), generator=g).double() / 4
    roles = pr_roles(world, scenario)
    acc = tbfast.PRCurveAccumulator(31, num_classes=5)
    for r in ranks:
        if roles[r] == "empty":
            continue
        for s in range(r * n // world, (r + 1) * n // world, 97):
            e = min(s + 97, (r + 1) * n // world)
            acc.update(preds[s:e], labels[s:e], weights[s:e] if roles[r] == "weighted" else None)
    return acc


def hist_rows(results):
    out = {}
    for name, r in results.items():
        counts, limits, stats, nonfinite = r.host()
        out[name] = (counts.tolist(), limits.tolist(), stats.tolist(), nonfinite.tolist(), r.num)
    return out


def run(rank, world, port, outdir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    import tbfast
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    res = {}
    mesh = init_device_mesh("cpu", (world,))
    full = full_tensors()
    for placement, key in ((Shard(0), "shard0"), (Shard(1), "shard1"), (Replicate(), "replicate")):
        named = {n: distribute_tensor(t, mesh, [Shard(min(placement.dim, t.dim() - 1))]
                                      if isinstance(placement, Shard) else [placement]) for n, t in full.items()}
        for bins in ("tensorflow", 17, [-5.0, -1.0, 0.0, 0.5, 2.0, 40.0]):
            res[(key, str(bins))] = hist_rows(tbfast.histograms(named, bins=bins, group=True))
    if world % 2 == 0:  # a 2-D mesh: sharded along one dim, replicated along the other
        mesh2 = init_device_mesh("cpu", (2, world // 2))
        named = {n: distribute_tensor(t, mesh2, [Replicate(), Shard(0)]) for n, t in full.items()}
        res[("mesh2d", "tensorflow")] = hist_rows(tbfast.histograms(named, group=True))

    # the all_reduce reduction (forced with a zero gather limit) gives the same results
    named = {n: distribute_tensor(t, mesh, [Shard(0)]) for n, t in full.items()}
    limit, tbfast.distributed.GATHER_MAX_BYTES = tbfast.distributed.GATHER_MAX_BYTES, 0
    try:
        for bins in ("tensorflow", 17, [-5.0, -1.0, 0.0, 0.5, 2.0, 40.0]):
            res[("allreduce", str(bins))] = hist_rows(tbfast.histograms(named, bins=bins, group=True))
    finally:
        tbfast.distributed.GATHER_MAX_BYTES = limit
    res[("max_bins", "tensorflow")] = hist_rows(tbfast.histograms(named, max_bins=5, group=True))
    res[("max_bins", "17")] = hist_rows(tbfast.histograms(named, bins=17, max_bins=5, group=True))

    # NumPy's estimator bins with a group: a clear ValueError on every rank, no collective
    for bins in ("auto", "fd"):
        for key, call in (("histograms", lambda: tbfast.histograms(named, bins=bins, group=True)),
                          ("add_histograms", lambda: tbfast.distributed.add_histograms(None, named, 1, bins=bins))):
            try:
                call()
                res[("estimator", bins, key)] = None
            except ValueError as exc:
                res[("estimator", bins, key)] = str(exc)

    # plain tensors with a group: every rank's part of the data is added up
    part = torch.arange(rank * 10, rank * 10 + 10, dtype=torch.float32)
    res[("parts", "5")] = hist_rows(tbfast.histograms({"part": part}, bins=5, group=True))

    # FSDP2 on CPU: parameters and gradients through the writer; rank 0 writes
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(torch.nn.Linear(9, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    fully_shard(model, mesh=mesh)
    x = torch.randn(4, 9, generator=torch.Generator().manual_seed(rank))
    model(x).sum().backward()
    writer = tbfast.SummaryWriter(os.path.join(outdir, "runs", "fsdp", f"rank{rank}"))  # every rank: only 0 writes
    tbfast.distributed.add_module_histograms(writer, model, 1, group=True)
    tbfast.distributed.add_module_histograms(writer, model, 2, bins=11, group=True)
    writer.close()
    res["fsdp_full"] = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
    res["fsdp_grads"] = {n: p.grad.full_tensor().detach().clone() for n, p in model.named_parameters()}

    # the SummaryWriter methods with group=, a writer on every rank: only rank 0 writes
    writer = tbfast.SummaryWriter(os.path.join(outdir, "runs", "writer", f"rank{rank}"))
    writer.add_histogram("a", named["a"], 1, group=True)
    writer.add_histograms(named, 2, bins=17, group=True)
    writer.add_module_histograms(model, 3, group=True)
    writer.close()

    # FSDP1 with use_orig_params=True: each rank holds flat pieces (some empty, without grads)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    torch.manual_seed(SEED)
    plain = torch.nn.Sequential(torch.nn.Linear(9, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    res["fsdp1_state"] = {n: p.detach().clone() for n, p in plain.named_parameters()}
    fsdp1 = FSDP(plain, device_id=torch.device("cpu"), use_orig_params=True)
    fsdp1(torch.randn(4, 9, generator=torch.Generator().manual_seed(7))).sum().backward()
    w1 = tbfast.SummaryWriter(os.path.join(outdir, "runs", "fsdp1")) if rank == 0 else None
    tbfast.distributed.add_module_histograms(w1, fsdp1, 1, group=True)
    if w1 is not None:
        w1.close()

    # FSDP1 with use_orig_params=False: FlatParameters, padded shards, a nested unit
    flat_model = fsdp1_flat_model()
    flat_model[2] = FSDP(flat_model[2], device_id=torch.device("cpu"), use_orig_params=False)
    flat = FSDP(flat_model, device_id=torch.device("cpu"), use_orig_params=False)
    flat(fsdp1_flat_input()).sum().backward()
    writer = tbfast.SummaryWriter(os.path.join(outdir, "runs", "fsdp1_flat", f"rank{rank}"))
    writer.add_module_histograms(flat, 1, group=True)
    tbfast.distributed.add_module_histograms(writer, flat, 2, bins=11, group=True)
    writer.close()
    from tbfast.histogram_logging import module_named_tensors

    res["fsdp1_flat_local"] = {tag: t.numel() for tag, t in module_named_tensors(flat)}

    # sharded evaluation: each rank holds a part of the predictions
    g = torch.Generator().manual_seed(SEED)
    n = 1001
    preds, labels, weights = torch.rand(n, 5, generator=g), torch.randint(0, 5, (n,), generator=g), torch.rand(n, generator=g)
    lo, hi = rank * n // world, (rank + 1) * n // world
    for weighted in (False, True):
        acc = tbfast.PRCurveAccumulator(31, num_classes=5)
        for s in range(lo, hi, 97):  # several batches per rank
            e = min(s + 97, hi)
            acc.update(preds[s:e], labels[s:e], weights[s:e] if weighted else None)
        acc.sync()
        res[("pr", weighted)] = acc.compute().data
    acc = tbfast.PRCurveAccumulator(21)
    acc.update(preds[lo:hi, 0], (labels[lo:hi] == 0).long())
    w = tbfast.SummaryWriter(os.path.join(outdir, "runs", "pr")) if rank == 0 else None
    tbfast.distributed.add_pr_accumulator(w, "val/pr", acc, 3)
    if w is not None:
        w.close()
    # ranks that differ: no batch at all, weighted and unweighted batches
    for scenario in PR_SCENARIOS:
        acc = pr_accumulator(world, scenario, [rank])
        acc.sync()
        sd = acc.state_dict()
        res[("pr_mixed", scenario)] = (acc.compute().data, sd["weighted"], str(sd["buckets"].dtype))
    w = tbfast.SummaryWriter(os.path.join(outdir, "runs", "pr_mixed", f"rank{rank}"))
    tbfast.distributed.add_pr_accumulator(w, "val/pr", pr_accumulator(world, "mixed_empty0", [rank]), 4)
    w.add_pr_accumulator("val/pr_empty0", pr_accumulator(world, "empty0", [rank]), 5, group=True)
    w.close()

    with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(res, f)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # results are on disk: skip interpreter finalization, where torch's gloo teardown can abort


if __name__ == "__main__":
    import torch.multiprocessing as mp

    world, port, outdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    mp.spawn(run, args=(world, port, outdir), nprocs=world, join=True)
