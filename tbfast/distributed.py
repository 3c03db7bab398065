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
* **FSDP1 with** ``use_orig_params=False``: ``named_parameters()`` yields FlatParameters.
  :func:`named_parameter_pieces` expands each into this rank's pieces of the original
  parameters and their gradients (from the FlatParameter's shard metadata), named as the
  model names them; the shard's padding is never counted. Module histograms and
  :func:`tbfast.watch` use it (watch names every parameter so, in both modes).
* **Bins:** fixed edges (``"tensorflow"``, a list) and ``bins=int`` (its range from one
  small collective) merge exactly; NumPy's estimators (``"auto"``, ``"fd"``, ...) need
  every value on one host and raise ValueError with a group.
* **Collectives:** TensorBoard's bucket edges are fixed, so histograms merge exactly by
  adding counts. For ``bins=int`` the global range comes first: one small ``all_reduce``
  (MAX) of the local finite min/max (:func:`global_ranges`). Then one
  ``all_gather`` of the packed result buffer per call (counts, non-finite counts and
  statistics of every tensor), reduced on the device in rank order (sums, min, max):
  deterministic, and no host sync before the single copy to the host. Each rank
  receives world x buffer bytes, so above :data:`GATHER_MAX_BYTES` (64 MiB received)
  the reduction is two ``all_reduce`` instead: SUM of counts, non-finite counts,
  element counts and float sums in one float64 buffer (counts exact below 2^53), and
  MAX of (-min, max); the float sums are then added in the backend's order (equal to
  rounding). PR curves: one ``all_reduce`` (SUM) of
  the accumulated state (:meth:`tbfast.PRCurveAccumulator.sync`).
"""

import numpy as np

from . import _tensor

__all__ = ["local_part", "add_histogram", "add_histograms", "add_module_histograms", "add_pr_accumulator",
           "is_writer", "named_parameter_pieces", "GATHER_MAX_BYTES"]

GATHER_MAX_BYTES = 64 << 20  # most bytes one rank receives from the all_gather reduction; all_reduce above


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


def global_ranges(descs, group, device, stream=None):
    """Per-tensor (first, last) of numpy's bins=int range rule over the finite values of
    every rank's part, as a float64 tensor [T, 2] on ``device``: local finite min/max
    (tbfast.histogram.local_minmax, no host sync), one all_reduce(MAX) of (-min, max).
    On CUDA it all runs on ``stream``, resolved as :class:`tbfast.histogram.HistogramJob`
    resolves the job's stream (default: the current one): the caller passes the job's
    ``stream`` so that the kernel reading the ranges runs after them on the same stream,
    with no cross-stream wait needed."""
    import torch

    from . import _device
    from .histogram import _torch_auto_range, local_minmax

    dist = _dist()
    with _device.StreamScope(_StreamOf(device, stream)):
        mm = local_minmax(descs, device)
        mm[:, 0].neg_()
        dist.all_reduce(mm, op=dist.ReduceOp.MAX, group=group)
        first, last = _torch_auto_range(-mm[:, 0], mm[:, 1])
        return torch.stack([first, last], dim=1)


class _StreamOf:
    """What :class:`tbfast._device.StreamScope` reads of a job (device type and torch
    stream) for ``stream`` on ``device`` ('cpu' or 'cuda:<index>')."""

    def __init__(self, device, stream):
        self.device_type, self.torch_stream = str(device).split(":")[0], None
        if self.device_type == "cuda":
            import torch

            from . import _device

            index = torch.device(device).index
            index = torch.cuda.current_device() if index is None else index
            self.torch_stream = _device.torch_stream(_device.resolve_stream(stream, index), index)


def reduce_packed(out, group, numels, gather_max_bytes=None):
    """Replace the packed histogram outputs (counts, stats, nonfinite, numel of every
    tensor) by their reduction over the group, on the buffer's device (run it on the
    job's stream). ``numels``: this rank's element counts (host int64 array).

    While world x buffer bytes is at most ``gather_max_bytes`` (default
    :data:`GATHER_MAX_BYTES`): one all_gather, then counts summed, min / max taken and
    float sums added in rank order (deterministic). Above it, two all_reduce (a float64
    SUM buffer and a MAX of (-min, max)), so no rank holds world x buffer; the float sums
    are then in the backend's order (equal to rounding)."""
    from . import _device

    buf = _torch_view(out.buffer)
    numel = _torch_view(out.numel)
    numel.copy_(_device.to_device(numels, buf.device), non_blocking=True)
    limit = GATHER_MAX_BYTES if gather_max_bytes is None else gather_max_bytes
    if _dist().get_world_size(group) * buf.numel() * buf.element_size() <= limit:
        _gather_reduce(out, buf, group)
    else:
        _all_reduce(out, group)


def _gather_reduce(out, buf, group):
    """reduce_packed by one all_gather; sums in rank order."""
    import torch

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
    _torch_view(out.numel).copy_(ints[3 * T:])
    stats = _torch_view(out.stats)
    stats[:, 0] = g_stats[:, :, 0].amin(dim=0)
    stats[:, 1] = g_stats[:, :, 1].amax(dim=0)
    acc = g_stats[0, :, 2:].clone()
    for r in range(1, g_stats.shape[0]):  # rank order: deterministic
        acc += g_stats[r, :, 2:]
    stats[:, 2:] = acc


def _all_reduce(out, group):
    """reduce_packed by two all_reduce: SUM of one float64 buffer (counts, non-finite
    counts, element counts: exact below 2^53; sum, sum of squares) and MAX of (-min,
    max). Memory: one buffer's size, whatever the world size."""
    import torch

    dist = _dist()
    counts = _torch_view(out.counts).reshape(-1)
    nonfinite = _torch_view(out.nonfinite).reshape(-1)
    numel = _torch_view(out.numel)
    stats = _torch_view(out.stats)
    ints = (counts, nonfinite, numel)
    sums = torch.cat([t.to(torch.float64) for t in ints] + [stats[:, 2:].reshape(-1)])
    minmax = torch.stack([-stats[:, 0], stats[:, 1]], dim=1)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    dist.all_reduce(minmax, op=dist.ReduceOp.MAX, group=group)
    offset = 0
    for t in ints:  # float64 -> int64: exact, every count is below 2^53
        t.copy_(sums[offset:offset + t.numel()])
        offset += t.numel()
    stats[:, 2:] = sums[offset:].reshape(-1, 2)
    stats[:, 0] = -minmax[:, 0]
    stats[:, 1] = minmax[:, 1]


# ---- FSDP1 FlatParameters -----------------------------------------------------------------


def _is_flat_param(p):
    return bool(getattr(p, "_is_flat_param", False))  # torch's mark of FSDP1's FlatParameter


def named_parameter_pieces(module, unwrap=False):
    """Yield (name, parameter, gradient or None) for each parameter of ``module``: what
    ``named_parameters()`` yields, except that an FSDP1 FlatParameter
    (``use_orig_params=False``) is expanded into one piece per original parameter.

    A piece is this rank's part of that parameter (a flat 1-D view, empty where the shard
    holds none of it) and the same part of the FlatParameter's sharded gradient (FSDP1
    leaves the reduced, sharded gradient in its ``.grad`` after backward; an unsharded one,
    as under ``no_sync``, is not reduced yet and gives None). The pieces come from the
    FlatParameter's shard metadata (``_fqns``, ``_shard_param_infos``), so neither the
    padding at the end of a shard nor the alignment padding between parameters is ever
    counted. A piece is named as ``use_orig_params=True`` would name the parameter, the
    module path of the FSDP unit and the parameter's name in it, without the wrapper
    prefixes (:func:`tbfast.watch.unwrapped_name`): ``fc.weight``. ``unwrap``: the other
    names without those prefixes too (they are as ``named_parameters()`` gives them
    otherwise).
    """
    from .watch import unwrapped_name

    for name, p in module.named_parameters():
        if _is_flat_param(p):
            yield from _flat_param_pieces(name, p, unwrapped_name)
        else:
            yield (unwrapped_name(name) if unwrap else name), p, p.grad


def _flat_param_pieces(name, flat, unwrapped_name):
    if flat.shape != flat._sharded_size:
        raise RuntimeError(f"{name}: this FlatParameter holds {flat.numel()} elements, not its shard of "
                           f"{flat._sharded_size.numel()} (it is unsharded inside forward/backward or "
                           "summon_full_params); log it after backward or outside those")
    unit = name.rpartition(".")[0]  # the module the FlatParameter is registered on
    data = flat.detach()
    grad = flat.grad
    if grad is not None and grad.shape != flat.shape:
        grad = None  # unsharded: not reduced yet
    for fqn, info in zip(flat._fqns, flat._shard_param_infos):
        start, n = (info.offset_in_shard, info.numel_in_shard) if info.in_shard else (0, 0)
        piece_name = unwrapped_name(f"{unit}.{fqn}" if unit else fqn)
        yield piece_name, data[start:start + n], None if grad is None else grad[start:start + n]


# ---- writer functions (writer may be None on ranks other than rank 0 of the group) ------------


def _check_writer(writer, group):
    if is_writer(group):
        if writer is None:
            raise ValueError("rank 0 of the group writes: it needs a writer (other ranks may pass None)")
        return True
    return False


def check_bins(bins):
    """ValueError for NumPy's estimator bins (``"auto"``, ``"fd"``, ...) with a group:
    they choose the bins from every value at once, which no rank holds. Checked before
    anything looks at the data (an estimator would copy it to the host first)."""
    from .histogram import ESTIMATORS

    if isinstance(bins, str) and bins in ESTIMATORS:
        raise ValueError(f"bins={bins!r} needs every value on one host; use an int or edges with group=")


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
    """Every parameter and gradient of a sharded module (FSDP2 / DTensor, FSDP1 in both
    ``use_orig_params`` modes), one collective for all of them; tags as
    :meth:`tbfast.SummaryWriter.add_module_histograms`."""
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
