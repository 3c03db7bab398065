"""Sharded models and sharded evaluation over torch.distributed (NCCL on GPUs, gloo on
CPUs): exact histograms of the full logical tensor from each rank's shard, and PR curves
of a sharded evaluation set.

The rules:

* **Every rank of the group calls**, with the same names in the same order (the results
  are reduced with collectives; a rank that does not call makes the others wait).
* **Rank 0 of the group writes.** The writer functions here take ``writer=None`` on the
  other ranks; the ``group=`` arguments of :class:`tbfast.SummaryWriter` methods compute
  and reduce on every rank and write only on rank 0 of the group.
* **What is reduced:** a DTensor (FSDP2 parameters and gradients, tensor parallelism) is
  the full logical tensor: each rank buckets its local shard, a replicated placement is
  counted once (by the rank at coordinate 0 of that mesh dimension), and a Partial
  placement is an error (its values are not the tensor's). A plain tensor given with a
  group is one rank's part of the data (an activation, an evaluation shard, FSDP1's
  ``use_orig_params=True`` views), so the parts of all ranks are added up; do not pass a
  group for tensors every rank holds whole (DDP parameters): they would be counted once
  per rank. Empty local shards are fine.
* **Collectives:** TensorBoard's bucket edges are fixed, so histograms merge exactly by
  adding counts. One ``all_gather`` of the packed result buffer per call (counts, non-finite
  counts and statistics of every tensor), reduced on the device in rank order (sums,
  min, max): deterministic, and no host sync before the single copy to the host. For
  ``bins=int`` the global range comes first: one small ``all_reduce`` (MAX) of the local
  finite min/max. PR curves: one ``all_reduce`` (SUM) of the accumulated state.
"""

import numpy as np

from . import _tensor

__all__ = ["local_part", "add_histogram", "add_histograms", "add_module_histograms", "add_pr_accumulator",
           "is_writer"]


def _dist():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("group= needs an initialised torch.distributed process group "
                           "(torch.distributed.init_process_group)")
    return dist


def resolve_group(group):
    """``group`` itself, or the default (world) group for ``True``."""
    dist = _dist()
    return dist.group.WORLD if group is True else group


def is_writer(group):
    """True on rank 0 of ``group``: the rank that writes."""
    dist = _dist()
    return dist.get_rank(resolve_group(group)) == 0


def _is_dtensor(t):
    cls = type(t)
    return cls.__name__ == "DTensor" and cls.__module__.startswith("torch.distributed")


def local_part(t, name="values"):
    """(local tensor, counts) of one input: a DTensor's local shard (an empty view where a
    replicated placement makes another rank count it), or the tensor itself."""
    if not _is_dtensor(t):
        return t
    coord = t.device_mesh.get_coordinate()
    local = t.to_local()
    if coord is None:  # this rank is not in the mesh: it holds nothing
        return local.reshape(-1)[:0]
    for dim, placement in enumerate(t.placements):
        if placement.is_partial():
            raise TypeError(f"{name} is a DTensor with a Partial placement on mesh dim {dim}: its local values are "
                            f"partial sums, not the tensor's; redistribute() it to Shard or Replicate first")
        if placement.is_replicate() and coord[dim] != 0:
            return local.reshape(-1)[:0]
    return local


def describe_local(named_tensors):
    """[(name, Desc)] of the local parts of a mapping or iterable of (name, tensor)."""
    items = named_tensors.items() if hasattr(named_tensors, "items") else named_tensors
    out, seen = [], set()
    for name, t in items:
        if name in seen:
            raise ValueError(f"histograms: duplicate name {name!r}")
        seen.add(name)
        out.append((name, _tensor.describe(local_part(t, repr(name)), name=repr(name))))
    return out


def _torch_view(x):
    import torch

    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def _all_gather(buffer, group):
    """[world, *buffer.shape] tensor of every rank's ``buffer`` (one collective)."""
    import torch

    dist = _dist()
    world = dist.get_world_size(group)
    flat = buffer.contiguous().reshape(-1)
    out = torch.empty(world * flat.numel(), dtype=buffer.dtype, device=buffer.device)  # gloo wants it flat
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, flat, group=group)
    return out.reshape((world,) + tuple(buffer.shape))


def global_ranges(descs, group, device):
    """Per-tensor (first, last) of numpy's bins=int range rule over the finite values of
    every rank's part, as a float64 tensor [T, 2] on ``device``: local finite min/max
    (tbfast.histogram.local_minmax, no host sync), one all_reduce(MAX) of (-min, max)."""
    import torch

    from .histogram import _torch_auto_range, local_minmax

    dist = _dist()
    mm = local_minmax(descs, device)
    mm[:, 0].neg_()
    dist.all_reduce(mm, op=dist.ReduceOp.MAX, group=group)
    first, last = _torch_auto_range(-mm[:, 0], mm[:, 1])
    return torch.stack([first, last], dim=1)


def reduce_packed(out, group, numels):
    """Replace the packed histogram outputs (counts, stats, nonfinite, numel of every
    tensor) by their reduction over the group: one all_gather, then counts summed, min /
    max taken and float sums added in rank order, on the buffer's device. ``numels``:
    this rank's element counts (host int64 array)."""
    import torch

    from . import _device

    buf = _torch_view(out.buffer)
    numel = _torch_view(out.numel)
    numel.copy_(_device.to_device(numels, buf.device), non_blocking=True)
    gathered = _all_gather(buf, group)  # [world, words]
    T = out.stats.shape[0]
    counts = _torch_view(out.counts).reshape(-1)
    n_counts = counts.numel()
    stats_off = n_counts  # Packed layout: counts, stats (float64 bits), nonfinite
    g_counts = gathered[:, :n_counts]
    g_stats = gathered[:, stats_off:stats_off + 4 * T].view(torch.float64).reshape(-1, T, 4)
    g_ints = gathered[:, stats_off + 4 * T:stats_off + 8 * T]  # nonfinite [T, 3], then numel [T]
    counts.copy_(g_counts.sum(dim=0))
    ints = g_ints.sum(dim=0)
    _torch_view(out.nonfinite).reshape(-1).copy_(ints[:3 * T])
    numel.copy_(ints[3 * T:])
    stats = _torch_view(out.stats)
    stats[:, 0] = g_stats[:, :, 0].amin(dim=0)
    stats[:, 1] = g_stats[:, :, 1].amax(dim=0)
    acc = g_stats[0, :, 2:].clone()
    for r in range(1, g_stats.shape[0]):  # rank order: deterministic
        acc += g_stats[r, :, 2:]
    stats[:, 2:] = acc


# ---- writer functions (writer may be None on ranks other than rank 0 of the group) ------------


def _check_writer(writer, group):
    if is_writer(group):
        if writer is None:
            raise ValueError("rank 0 of the group writes: it needs a writer (other ranks may pass None)")
        return True
    return False


def add_histograms(writer, named_tensors, global_step=None, walltime=None, bins="tensorflow", max_bins=None,
                   group=True, stream=None):
    """Histograms of the full logical tensors (see the module rules); every rank calls,
    rank 0 of ``group`` (default: the world) writes with ``writer``."""
    from .histogram import launch
    from .histogram_logging import HistogramLogging

    group = resolve_group(group)
    batches = launch(describe_local(named_tensors), bins=bins, max_bins=max_bins, stream=stream, group=group)
    if _check_writer(writer, group):
        HistogramLogging._start_batches(batches)
        writer._write_histogram_batches(batches, global_step, walltime)


def add_histogram(writer, tag, values, global_step=None, bins="tensorflow", walltime=None, max_bins=None,
                  group=True):
    """One tensor (e.g. a DTensor parameter); see :func:`add_histograms`."""
    add_histograms(writer, [(tag, values)], global_step, walltime, bins=bins, max_bins=max_bins, group=group)


def add_module_histograms(writer, module, global_step=None, walltime=None, parameters=True, gradients=True,
                          prefix="", bins="tensorflow", max_bins=None, group=True):
    """Every parameter and gradient of a sharded module (FSDP2 / DTensor), one collective
    for all of them; tags as :meth:`tbfast.SummaryWriter.add_module_histograms`."""
    from .histogram_logging import module_named_tensors

    named = module_named_tensors(module, parameters, gradients, prefix, sharded=True)
    add_histograms(writer, named, global_step, walltime, bins=bins, max_bins=max_bins, group=group)


def add_pr_accumulator(writer, tag, accumulator, global_step=None, class_names=None, walltime=None, group=True):
    """Sum a :class:`tbfast.PRCurveAccumulator` over the group in place (every rank
    calls), then rank 0 writes its curves."""
    group = resolve_group(group)
    accumulator.sync(group)
    if _check_writer(writer, group):
        writer.add_pr_accumulator(tag, accumulator, global_step, class_names, walltime)
