"""Histogram op: TensorBoard-exact bucket counts and statistics, computed where the data is.

Public API: :func:`histogram`, :func:`histograms`, :func:`default_edges`,
:class:`HistogramResult`, :class:`HistogramBatch`. Bucket semantics are NumPy's
``np.histogram`` on float64, which is what ``torch.utils.tensorboard`` runs (spec 1.3);
see csrc/histogram.h for the kernels.

Flow (the device contract, tbfast/_device.py): inputs are described once
(tbfast/_tensor.py), grouped per device, and each group becomes one :class:`HistogramJob`
whose outputs (counts, statistics, non-finite counts of every tensor) are views of one
packed buffer on that device. One backend call fills it (one native launch sequence per
device for any number of tensors). The batch reaches the host with one asynchronous copy;
limits for ``bins=int`` are derived from the statistics there, and checks that need the
data ("too many bins for the data range", as NumPy raises) run there: at once for CPU
input, when the result is first read for CUDA input (for the writer: on its next call,
``flush()`` or ``close()``, naming the tag).
"""

import functools
import math
import operator

import numpy as np

from . import _device, _dtypes, _native, _tensor, backends

# NumPy's bin estimators, which torch passes straight to np.histogram (spec 1.2).
ESTIMATORS = ("auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt")

EDGES, UNIFORM, UNIFORM_AUTO = 0, 1, 2  # csrc/histogram.h HistMode (checked against tbfast._C)


@functools.lru_cache(maxsize=1)
def _default_edges():
    # torch.utils.tensorboard.writer.SummaryWriter.__init__: iterated float64 products,
    # which differ in the last bits from 1e-12 * 1.1**k (spec 1.2).
    v, pos = 1e-12, []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    edges = np.array([-x for x in reversed(pos)] + [0.0] + pos, dtype=np.float64)
    edges.setflags(write=False)
    return edges


def default_edges():
    """TensorBoard's default ("tensorflow") bucket edges: 1549 float64 values, 1548 bins."""
    return _default_edges().copy()


@functools.lru_cache(maxsize=32)
def _lookup_for(edges_bytes):
    """(edges, EdgeLookup bytes as uint8) built by the native module; the struct size
    comes from the module itself."""
    edges = np.frombuffer(edges_bytes, dtype=np.float64)
    mod, why = _native.cpu()
    if mod is None:
        raise backends.BackendUnavailable(why)
    lookup = np.zeros(mod.HIST_EDGE_LOOKUP_BYTES, dtype=np.uint8)
    mod.histogram_build_lookup(edges=edges.ctypes.data, num_edges=edges.size, lookup=lookup.ctypes.data,
                               lookup_bytes=lookup.nbytes)
    return edges, lookup


class BinSpec:
    """Resolved ``bins`` argument: mode, bin count, shared edges (EDGES mode) or
    per-tensor ranges (UNIFORM), or None ranges to be taken from the data (UNIFORM_AUTO)."""

    __slots__ = ("mode", "num_bins", "edges", "ranges")

    def __init__(self, mode, num_bins, edges=None, ranges=None):
        self.mode, self.num_bins, self.edges, self.ranges = mode, num_bins, edges, ranges


def _resolve_bins(bins, descs):
    if isinstance(bins, str):
        if bins == "tensorflow":
            edges = _default_edges()
            return BinSpec(EDGES, edges.size - 1, edges=edges)
        if bins in ESTIMATORS:
            return _estimator_bins(bins, descs)
        raise ValueError(f"bins={bins!r}: expected 'tensorflow', one of {ESTIMATORS}, an int or a sequence of edges")
    if isinstance(bins, (bool, np.bool_)):
        raise TypeError("bins must be 'tensorflow', an estimator name, an int or a sequence of edges, not a bool")
    try:
        n = operator.index(bins)
    except TypeError:
        n = None
    if n is not None:
        if n < 1:
            raise ValueError(f"bins={n}: an integer bin count must be positive")
        return BinSpec(UNIFORM_AUTO, n)
    edges = np.asarray(bins.cpu() if _tensor.is_torch_tensor(bins) else bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"bins as edges must be a 1-D sequence of at least 2 values, got shape {edges.shape}")
    if np.isnan(edges).any():
        raise ValueError("bins: edges contain NaN")
    if (edges[:-1] > edges[1:]).any():
        raise ValueError("bins must increase monotonically, when an array")
    edges = np.ascontiguousarray(edges)
    edges.setflags(write=False)
    return BinSpec(EDGES, edges.size - 1, edges=edges)


def _estimator_bins(name, descs):
    # Quantile-based estimators need the data on the host (for CUDA input: a copy and a
    # sync, documented): equal-width bins whose count NumPy chooses; counting then runs
    # on the uniform path like np.histogram does.
    ranges, counts = [], set()
    for f in descs:
        vals = _finite_float64(f)
        edges = np.histogram_bin_edges(vals, bins=name)
        ranges.append((edges[0], edges[-1]))
        counts.add(edges.size - 1)
    if len(counts) > 1:
        raise ValueError(f"bins={name!r} chose different bin counts for different tensors; call histogram() per tensor")
    return BinSpec(UNIFORM, counts.pop(), ranges=np.array(ranges, dtype=np.float64).reshape(-1, 2))


def _finite_float64(f):
    if f.is_torch:
        vals = f.flat_owner().cpu().double().numpy()
    else:
        vals = _host_float64(f.numpy(), f.dtype)
    return vals[np.isfinite(vals)]


def _host_float64(arr, code):
    if code == _dtypes.BFLOAT16:
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return arr.astype(np.float64)


def _edges_for(spec, t, stats):
    """Bucket limits of tensor t as float64 host array (len num_bins + 1)."""
    if spec.mode == EDGES:
        return spec.edges
    if spec.mode == UNIFORM:
        first, last = spec.ranges[t]
    else:
        first, last = _auto_range(stats[0], stats[1])
    return np.linspace(first, last, spec.num_bins + 1)


def _auto_range(mn, mx):
    # csrc/histogram.h auto_range: numpy's bins=int rule on the finite values.
    if not mn <= mx:
        return 0.0, 1.0
    if mn == mx:
        return mn - 0.5, mx + 0.5
    return mn, mx


# ---------------------------------------------------------------------------------------
# The job: what every backend receives.
# ---------------------------------------------------------------------------------------


class HistogramJob:
    """One device's share of a histogram call.

    descs: [Desc] (flat descriptors, all on one device); spec: BinSpec; device_type
    'cpu' / 'cuda' / 'meta'; device_index; stream: raw handle (CUDA) and torch_stream;
    out: :class:`tbfast._device.Packed` with ``counts`` int64 [T, B], ``stats`` float64
    [T, 4] (finite min, max, sum, sum of squares) and ``nonfinite`` int64 [T, 3] (NaN,
    +Inf, -Inf) on the job's device. A backend fills every element of ``out``.
    """

    __slots__ = ("descs", "spec", "device_type", "device_index", "stream", "torch_stream", "out")

    def __init__(self, descs, spec, device_type, device_index=None, stream=None):
        self.descs, self.spec = descs, spec
        self.device_type, self.device_index = device_type, device_index
        self.stream = self.torch_stream = None
        if device_type == "cuda":
            self.stream = _device.resolve_stream(stream, device_index)
            self.torch_stream = _device.torch_stream(self.stream, device_index)
            current = _device._torch().cuda.current_stream(device_index)
            if self.torch_stream.cuda_stream != current.cuda_stream:
                for d in descs:  # the inputs are read on another stream than they were made on
                    d.owner.record_stream(self.torch_stream)
        T, B = len(descs), spec.num_bins
        with _device.StreamScope(self):
            self.out = _device.Packed([("counts", (T, B), "i8"), ("stats", (T, 4), "f8"), ("nonfinite", (T, 3), "i8"),
                                       ("numel", (T,), "i8")], device_type, device_index, self.torch_stream)


# ---------------------------------------------------------------------------------------
# Backends (registered in tbfast/backends.py OPS). Each fills job.out on job's device.
# ---------------------------------------------------------------------------------------


def _native_cpu(job):
    mod, why = _native.cpu()
    if mod is None:
        raise backends.BackendUnavailable(why)
    spec, out = job.spec, job.out
    T, B = len(job.descs), spec.num_bins
    data = np.array([f.ptr for f in job.descs], dtype=np.uint64)
    numels = np.array([f.numel for f in job.descs], dtype=np.int64)
    codes = np.array([f.dtype for f in job.descs], dtype=np.int32)
    edges_ptr = lookup_ptr = ranges_ptr = 0
    if spec.mode == EDGES:
        edges, lookup = _lookup_for(spec.edges.tobytes())
        edges_ptr, lookup_ptr = edges.ctypes.data, lookup.ctypes.data
    elif spec.mode == UNIFORM:
        ranges = np.ascontiguousarray(spec.ranges, dtype=np.float64)
        ranges_ptr = ranges.ctypes.data
    args = dict(num_tensors=T, data=data.ctypes.data, numels=numels.ctypes.data, dtypes=codes.ctypes.data,
                mode=spec.mode, num_bins=B, edges=edges_ptr, lookup=lookup_ptr, ranges=ranges_ptr,
                counts=out.counts.ctypes.data, stats=out.stats.ctypes.data, nonfinite=out.nonfinite.ctypes.data,
                num_threads=_native.num_threads())
    if spec.mode != EDGES:  # statistics in their own (vectorised) pass; for UNIFORM_AUTO they set the range
        mod.histogram(**args, stats_only=True, with_stats=True)
        mod.histogram(**args, stats_only=False, with_stats=False)
    else:
        mod.histogram(**args, stats_only=False, with_stats=True)


def _native_cuda(job):
    """One launch sequence for every tensor of the job (csrc/cuda/histogram_cuda.cu),
    enqueued on the job's stream; nothing waits for the device."""
    mod, why = _native.cuda()
    if mod is None:
        raise backends.BackendUnavailable(why)
    torch = _device._torch()
    spec, out, descs = job.spec, job.out, job.descs
    T, B = len(descs), spec.num_bins
    chunk = mod.HIST_CUDA_CHUNK
    numels = np.array([d.numel for d in descs], dtype=np.int64)
    offsets = np.zeros(T + 1, dtype=np.int64)
    np.cumsum((numels + chunk - 1) // chunk, out=offsets[1:])
    codes = np.zeros(T + (T & 1), dtype=np.int32)
    codes[:T] = [d.dtype for d in descs]
    parts = [np.array([d.ptr for d in descs], dtype=np.int64), numels, offsets, codes.view(np.int64)]
    device_ranges = _tensor.is_torch_tensor(spec.ranges)  # computed on the device (group=, bins=int)
    if spec.mode == UNIFORM and not device_ranges:
        parts.append(np.ascontiguousarray(spec.ranges, dtype=np.float64).reshape(-1).view(np.int64))
    table = np.concatenate(parts)
    dev = torch.device("cuda", job.device_index)
    with _device.StreamScope(job):
        meta = _device.to_device(table, dev)  # one pinned, non-blocking upload of the descriptors
        base = meta.data_ptr()
        edges_ptr = lookup_ptr = ranges_ptr = 0
        if spec.mode == EDGES:
            key = spec.edges.tobytes()
            edges_ptr = _device.device_constant(("edges", key), lambda: spec.edges, job.device_index,
                                                job.torch_stream).data_ptr()
            lookup_ptr = _device.device_constant(("lookup", key), lambda: _lookup_for(key)[1], job.device_index,
                                                 job.torch_stream).data_ptr()
        elif spec.mode == UNIFORM:
            ranges_ptr = spec.ranges.data_ptr() if device_ranges else base + 8 * (3 * T + 1 + len(codes) // 2)
        num_chunks = int(offsets[-1])
        nbytes = mod.histogram_cuda_scratch_bytes(num_tensors=T, num_chunks=num_chunks, num_bins=B, mode=spec.mode)
        scratch = torch.empty(max(1, nbytes), dtype=torch.uint8, device=dev)
        mod.histogram_cuda(num_tensors=T, data=base, numels=base + 8 * T, chunk_offsets=base + 16 * T,
                           dtypes=base + 8 * (3 * T + 1), num_chunks=num_chunks, mode=spec.mode, num_bins=B,
                           edges=edges_ptr, lookup=lookup_ptr, ranges=ranges_ptr, counts=out.counts.data_ptr(),
                           stats=out.stats.data_ptr(), nonfinite=out.nonfinite.data_ptr(), scratch=scratch.data_ptr(),
                           scratch_bytes=nbytes, stream=job.stream, device=job.device_index)


def _numba_cpu(job):
    from .numba_kernels import histogram_numba as nk

    spec, out = job.spec, job.out
    counts, stats, nonfinite = out.counts, out.stats, out.nonfinite
    counts[...] = 0
    for t, f in enumerate(job.descs):
        arr, kind = nk.prepare(f.numpy(), f.dtype)
        nk.stats(arr, kind, stats[t], nonfinite[t])
        if spec.mode == EDGES:
            nk.count_edges(arr, kind, spec.edges, counts[t])
        else:
            first, last = spec.ranges[t] if spec.mode == UNIFORM else _auto_range(stats[t, 0], stats[t, 1])
            nk.count_uniform(arr, kind, float(first), float(last), counts[t])


def _numba_cuda(job):
    from .numba_kernels import histogram_numba_cuda as nk

    with _device.StreamScope(job):
        nk.run(job)


def _as_torch(x):
    import torch

    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def _reference_impl(job):
    """Plain torch ops on the job's device: float64 copy, searchsorted, scatter_add.
    No host synchronisation (tests run it on meta tensors, which cannot be read): slow
    and memory-hungry, but obviously NumPy-equivalent."""
    import torch

    spec = job.spec
    B = spec.num_bins
    counts, stats, nonfinite = (_as_torch(x) for x in (job.out.counts, job.out.stats, job.out.nonfinite))
    dev = counts.device
    with _device.StreamScope(job):
        inf = torch.full((), math.inf, dtype=torch.float64, device=dev)
        edges = _device.to_device(spec.edges, dev) if spec.mode == EDGES else None
        ranges = _device.to_device(spec.ranges, dev) if spec.mode == UNIFORM else None
        for t, f in enumerate(job.descs):
            x = _torch_float64(f, dev)
            fin = torch.isfinite(x)
            xf = torch.where(fin, x, torch.zeros((), dtype=x.dtype, device=dev))
            stats[t, 0] = torch.where(fin, x, inf).amin() if f.numel else inf
            stats[t, 1] = torch.where(fin, x, -inf).amax() if f.numel else -inf
            stats[t, 2] = xf.sum()
            stats[t, 3] = (xf * xf).sum()
            nonfinite[t, 0] = torch.isnan(x).sum()
            nonfinite[t, 1] = (x == math.inf).sum()
            nonfinite[t, 2] = (x == -math.inf).sum()
            if spec.mode == EDGES:
                ub = torch.searchsorted(edges, xf, right=True)
                slot = ub - (xf == edges[-1]).long()  # last bin is closed
            else:
                if spec.mode == UNIFORM:
                    first, last = ranges[t, 0], ranges[t, 1]
                else:
                    first, last = _torch_auto_range(stats[t, 0], stats[t, 1])
                slot = _torch_uniform_slot(xf, first, last, B)
            slot = torch.where(fin, slot, torch.zeros_like(slot))
            full = torch.zeros(B + 2, dtype=torch.int64, device=dev)
            full.scatter_add_(0, slot, torch.ones_like(slot))
            counts[t] = full[1:B + 1]


def _torch_float64(f, dev):
    import torch

    if f.is_torch:
        return f.flat_owner().to(device=dev, dtype=torch.float64)
    return torch.from_numpy(_host_float64(f.numpy(), f.dtype))


def _torch_auto_range(mn, mx):
    import torch

    none = ~(mn <= mx)
    eq = mn == mx
    first = torch.where(none, torch.zeros_like(mn), torch.where(eq, mn - 0.5, mn))
    last = torch.where(none, torch.ones_like(mx), torch.where(eq, mx + 0.5, mx))
    return first, last


def _torch_uniform_slot(x, first, last, n):
    # numpy's uniform path (see csrc/histogram.h UniformBins), slot = bin + 1, 0 = outside.
    import torch

    denom = last - first
    step = denom / n
    i = torch.arange(n + 1, dtype=torch.float64, device=x.device)
    edges = torch.where(step == 0, (i / n) * denom + first, i * step + first)
    edges = torch.cat([edges[:-1], last.reshape(1)])
    keep = (x >= first) & (x <= last)
    f = ((x - first) / denom) * n
    idx = torch.where(keep & (f >= 0) & (f <= n), f, torch.zeros_like(f)).long()  # NaN-safe, as in the kernel
    idx = idx - (idx == n).long()
    idx = idx - (x < edges[idx]).long()
    idx = idx + ((x >= edges[(idx + 1).clamp(max=n)]) & (idx != n - 1)).long()
    return torch.where(keep, idx.clamp(min=0) + 1, torch.zeros_like(idx))


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


def merge_max_bins(counts, limits, max_bins):
    """torch's max_bins subsampling (spec 1.3 step 3) on NumPy arrays or torch tensors:
    groups of ``num_bins // max_bins`` consecutive bins are summed, the last group padded
    with empty bins; the result can have more than max_bins bins, exactly as in torch."""
    num_bins = counts.shape[-1]
    if max_bins is None or num_bins <= max_bins:
        return counts, limits
    sub = num_bins // max_bins
    rem = num_bins % sub
    if rem:
        pad = sub - rem
        if _tensor.is_torch_tensor(counts):
            import torch

            counts = torch.cat([counts, counts.new_zeros(pad)])
        else:
            counts = np.concatenate([counts, np.zeros(pad, dtype=counts.dtype)])
    counts = counts.reshape(-1, sub).sum(-1)
    new_limits = limits[:-1:sub]
    if _tensor.is_torch_tensor(limits):
        import torch

        new_limits = torch.cat([new_limits, limits[-1:]])
    else:
        new_limits = np.concatenate([new_limits, limits[-1:]])
    return counts, new_limits


def _supports(counts):
    """[(first, last + 1)] of the non-empty bins of each row of counts [T, B], for all
    rows in one vectorised pass ((0, 0) for an empty row)."""
    nz = counts != 0
    first = nz.argmax(axis=1)
    end = counts.shape[1] - nz[:, ::-1].argmax(axis=1)
    empty = ~nz[np.arange(len(counts)), first]
    first[empty] = 0
    end[empty] = 0
    return list(zip(first.tolist(), end.tolist()))


class HistogramBatch:
    """Histograms of the tensors of one device, from one backend call.

    It owns the packed output buffer (on the device); ``results`` are
    :class:`HistogramResult` views of its rows. :meth:`start_host_copy` begins the one
    asynchronous copy to the host, :meth:`ready` says whether it landed, :meth:`host`
    waits for it, derives limits, applies ``max_bins`` and runs the checks that need
    the data, raising ValueError naming the tensor.
    """

    def __init__(self, names, job, backend, max_bins, spec=None, numels=None):
        self.names, self.job, self.backend, self.max_bins = names, job, backend, max_bins
        self.spec = job.spec if spec is None else spec  # the bins as asked for: limits come from it
        self._numels = numels  # None after a reduction: the global counts are in the buffer
        self.torch_out = [d.is_torch for d in job.descs] + [True] * (len(names) - len(job.descs))
        self._host = None
        self.results = [HistogramResult(self, i) for i in range(len(names))]

    @property
    def device_type(self):
        return self.job.device_type

    @property
    def numels(self):
        if self._numels is None:
            self._numels = self.job.out.host()["numel"].tolist()
        return self._numels

    def start_host_copy(self):
        if self.job.device_type == "cuda":
            self.job.out.start_host_copy()
        return self

    def ready(self):
        return self.job.out.ready()

    def _limits(self, t, stats):
        """Bucket limits of row t; ValueError naming the tensor when its range cannot hold
        the bins (bins=int modes only: fixed edges always can)."""
        lim = _edges_for(self.spec, t, stats)
        if self.spec.mode != EDGES and not (lim[:-1] < lim[1:]).all():
            raise ValueError(f"histogram of {self.names[t]!r}: too many bins for data range; cannot create "
                             f"{self.spec.num_bins} finite-sized bins over [{lim[0]!r}, {lim[-1]!r}] "
                             "(numpy raises the same)")
        return lim

    def check(self):
        """Run the checks that need the data (too many bins for a tensor's range), without
        building the per-row results :meth:`host` makes; a host batch only (no wait)."""
        if self._host is None and self.spec.mode != EDGES:
            stats = self.job.out.host()["stats"]
            for t in range(len(self.names)):
                self._limits(t, stats[t])
        return self

    def host(self):
        """Host arrays of every row: dict with ``counts`` [T] (list of arrays after
        max_bins), ``limits`` [T], ``stats`` [T, 4], ``nonfinite`` [T, 3], ``supports``.
        Raises ValueError for a tensor whose range cannot hold the bins."""
        if self._host is None:
            h = self.job.out.host()
            counts, limits = [], []
            for t in range(len(self.names)):
                c, lim = merge_max_bins(h["counts"][t], self._limits(t, h["stats"][t]), self.max_bins)
                counts.append(c)
                limits.append(lim)
            supports = _supports(h["counts"]) if self.max_bins is None else [None] * len(self.names)
            self._host = {"counts": counts, "limits": limits, "stats": h["stats"], "nonfinite": h["nonfinite"],
                          "supports": supports}
        return self._host


class HistogramResult:
    """Histogram of one tensor: a row of a :class:`HistogramBatch`.

    Array fields (torch tensors for torch input, on the input's device for counts /
    stats / nonfinite; NumPy arrays for everything else): ``counts`` int64 [B] (after
    ``max_bins`` merging), ``limits`` float64 [B + 1] bucket edges (host), ``stats``
    float64 [4] (finite min, max, sum, sum of squares) and ``nonfinite`` int64 [3] (NaN,
    +Inf, -Inf counts). Scalar properties (``min``, ``max``, ``sum``, ``sum_squares``,
    ``num``, ``nan_count``...) wait for the batch's host copy when read. ``num`` counts
    the finite values; values beyond the outer edges are counted in ``num`` and the
    statistics but in no bucket, as in torch.
    """

    __slots__ = ("batch", "row")

    def __init__(self, batch, row):
        self.batch, self.row = batch, row

    @property
    def backend(self):
        return self.batch.backend

    @property
    def numel(self):
        return self.batch.numels[self.row]

    @property
    def support(self):
        return self.batch.host()["supports"][self.row]

    def _device_field(self, name):
        x = getattr(self.batch.job.out, name)[self.row]
        torch_out = self.batch.torch_out[self.row]
        if torch_out and isinstance(x, np.ndarray):
            import torch

            return torch.from_numpy(x)
        if not torch_out and not isinstance(x, np.ndarray):
            return x.cpu().numpy()
        return x

    @property
    def counts(self):
        if self.batch.device_type == "cpu" or self.batch.max_bins is not None:
            c = self.host()[0]
            return self._wrap(c)
        return self._device_field("counts")

    @property
    def limits(self):
        return self._wrap(self.host()[1])

    stats = property(lambda self: self._device_field("stats"))
    nonfinite = property(lambda self: self._device_field("nonfinite"))

    def _wrap(self, x):
        if self.batch.torch_out[self.row]:
            import torch

            return torch.from_numpy(np.array(x) if not x.flags.writeable else x)
        return x

    def host(self):
        """(counts, limits, stats, nonfinite) as host NumPy arrays (after max_bins)."""
        h = self.batch.host()
        r = self.row
        return h["counts"][r], h["limits"][r], h["stats"][r], h["nonfinite"][r]

    def numpy(self):
        """(counts int64 [B], limits float64 [B+1]) as NumPy arrays on the host."""
        return self.host()[:2]

    @property
    def num(self):
        """Number of finite values."""
        return self.numel - int(self.host()[3].sum())

    @property
    def min(self):
        return float(self.host()[2][0]) if self.num else 0.0

    @property
    def max(self):
        return float(self.host()[2][1]) if self.num else 0.0

    @property
    def sum(self):
        return float(self.host()[2][2])

    @property
    def sum_squares(self):
        return float(self.host()[2][3])

    @property
    def nan_count(self):
        return int(self.host()[3][0])

    @property
    def posinf_count(self):
        return int(self.host()[3][1])

    @property
    def neginf_count(self):
        return int(self.host()[3][2])

    def __repr__(self):
        return (f"HistogramResult(bins={len(self.host()[0])}, num={self.num}, min={self.min:g}, max={self.max:g}, "
                f"nan={self.nan_count}, +inf={self.posinf_count}, -inf={self.neginf_count}, backend={self.backend})")


# ---------------------------------------------------------------------------------------
# The public API
# ---------------------------------------------------------------------------------------


def _check_max_bins(max_bins):
    if max_bins is None:
        return
    if isinstance(max_bins, bool) or not isinstance(max_bins, (int, np.integer)) or max_bins < 1:
        raise ValueError(f"max_bins must be a positive int or None, got {max_bins!r}")


def launch(named_descs, bins="tensorflow", max_bins=None, backend=None, stream=None, group=None):
    """Histograms of [(name, Desc)] as one :class:`HistogramBatch` per device, each from
    one backend call, in first-appearance order. Nothing waits for a device: CUDA
    batches stay on their device until :meth:`HistogramBatch.start_host_copy` /
    :meth:`HistogramBatch.host`. Raises ValueError for empty tensors and bad bins.

    ``group`` (a torch.distributed group; tbfast/distributed.py): every rank passes its
    part of each tensor (empty parts allowed), and each batch is reduced over the group
    before it leaves the device; all tensors must then be on one device."""
    _check_max_bins(max_bins)
    if group is not None:
        from . import distributed

        distributed.check_bins(bins)  # before any estimator copies data to the host
    groups = {}
    for name, d in named_descs:
        if d.numel == 0 and group is None:
            raise ValueError(f"histogram of {name!r}: the tensor has no elements")
        groups.setdefault((d.device, d.device_index), []).append((name, d))
    if group is not None and len(groups) > 1:
        raise ValueError(f"histograms with group=: every tensor must be on one device, got {sorted(groups)}")
    batches = []
    for (device, index), items in groups.items():
        descs = [d for _, d in items]
        spec = _resolve_bins(bins, descs)
        kernel_spec = spec
        if group is not None and spec.mode == UNIFORM_AUTO:  # the global range first: one small all_reduce
            dev = "cpu" if device == "cpu" else f"cuda:{index}"  # on the device, on the job's stream
            kernel_spec = BinSpec(UNIFORM, spec.num_bins, ranges=distributed.global_ranges(descs, group, dev, stream))
        job = HistogramJob(descs, kernel_spec, device, index, stream)
        full = [i for i, d in enumerate(descs) if d.numel]
        if len(full) == len(descs):
            used = backends.dispatch("histogram", job, backend)
        elif full:  # empty local parts (group=): the kernels run on the others, rows keep their order on every rank
            used = _dispatch_rows(job, full, backend)
        else:  # nothing local at all: this rank only takes part in the reduction
            _fill_empty_rows(job.out, 0)
            used = "none"
        numels = [d.numel for d in descs]
        if group is not None:
            with _device.StreamScope(job):
                distributed.reduce_packed(job.out, group, np.array(numels, dtype=np.int64))
            numels = None  # global element counts: read from the reduced buffer
        batches.append(HistogramBatch([n for n, _ in items], job, used, max_bins, spec=spec, numels=numels))
    return batches


def _dispatch_rows(job, rows, backend):
    """Run the backend on the tensors at ``rows`` only and place their outputs there; the
    other rows get empty results."""
    spec = job.spec
    if spec.mode == UNIFORM:
        ranges = spec.ranges[rows] if not _tensor.is_torch_tensor(spec.ranges) else spec.ranges[
            _device.to_device(np.array(rows, dtype=np.int64), spec.ranges.device)]
        spec = BinSpec(UNIFORM, spec.num_bins, ranges=ranges)
    sub = HistogramJob([job.descs[i] for i in rows], spec, job.device_type, job.device_index, job.stream)
    used = backends.dispatch("histogram", sub, backend)
    out = job.out
    _fill_empty_rows(out, 0)
    with _device.StreamScope(job):
        idx = rows if out.device_type == "cpu" else _device.to_device(np.array(rows, dtype=np.int64), out.buffer.device)
        for name in ("counts", "stats", "nonfinite"):
            getattr(out, name)[idx] = getattr(sub.out, name)
    return used


def local_minmax(descs, device):
    """Finite (min, max) of each descriptor as a float64 tensor [T, 2] on ``device``
    ((inf, -inf) when nothing is finite), without a host sync: the native CPU stats pass
    on the host, torch ops on a GPU."""
    import torch

    mod, _ = _native.cpu()
    if device == "cpu" and mod is not None:
        stats = np.empty((len(descs), 4), np.float64)
        nonfinite = np.empty((len(descs), 3), np.int64)
        data = np.array([d.ptr for d in descs], dtype=np.uint64)
        numels = np.array([d.numel for d in descs], dtype=np.int64)
        codes = np.array([d.dtype for d in descs], dtype=np.int32)
        if len(descs):
            mod.histogram(num_tensors=len(descs), data=data.ctypes.data, numels=numels.ctypes.data,
                          dtypes=codes.ctypes.data, mode=UNIFORM_AUTO, num_bins=1, edges=0, lookup=0, ranges=0,
                          counts=0, stats=stats.ctypes.data, nonfinite=nonfinite.ctypes.data, stats_only=True,
                          with_stats=True, num_threads=_native.num_threads())
        return torch.from_numpy(np.ascontiguousarray(stats[:, :2]))
    mm = torch.empty((len(descs), 2), dtype=torch.float64, device=device)
    inf = torch.full((), math.inf, dtype=torch.float64, device=device)
    for t, d in enumerate(descs):
        if not d.numel:
            mm[t, 0], mm[t, 1] = math.inf, -math.inf
            continue
        x = _torch_float64(d, torch.device(device))
        fin = torch.isfinite(x)
        mm[t, 0] = torch.where(fin, x, inf).amin()
        mm[t, 1] = torch.where(fin, x, -inf).amax()
    return mm


def _fill_empty_rows(out, start):
    """Rows of empty tensors: no counts, no values (min +inf, max -inf, sums 0)."""
    out.counts[start:] = 0
    out.nonfinite[start:] = 0
    out.stats[start:, 0] = math.inf
    out.stats[start:, 1] = -math.inf
    out.stats[start:, 2:] = 0.0


def _results(named_descs, batches):
    by_name = {}
    for b in batches:
        if b.device_type == "cpu":
            b.host()  # checks that need the data: at once for CPU input
        for name, r in zip(b.names, b.results):
            by_name[name] = r
    return by_name


@_tensor.untraced
def histogram(values, bins="tensorflow", max_bins=None, backend=None, stream=None):
    """Histogram of ``values`` as ``torch.utils.tensorboard`` would bucket it.

    values: torch tensor (any shape, stride, device CPU/CUDA; bool, integer, float16,
        bfloat16, float32 or float64), NumPy array, sequence or number. Never copied to
        float64; not copied at all when its memory is dense.
    bins: ``"tensorflow"`` (TensorBoard's default 1548 buckets, spec 1.2), an int (equal
        width over the finite min..max, NumPy-exact), an increasing sequence of edges, or a
        NumPy estimator name (``"auto"``, ``"fd"``...; computed on the host).
    max_bins: merge buckets exactly as torch does (spec 1.3), or None.
    backend: force ``"native"``, ``"numba"`` or ``"reference"`` (default: best available,
        or TBFAST_BACKEND).
    stream: CUDA input only: a ``torch.cuda.Stream``, an object with ``__cuda_stream__``
        or a raw handle; default torch's current stream of the tensor's device.

    NaN and +-Inf are never bucketed and never fail: they are counted in the result's
    ``nonfinite`` and left out of min/max/sum/sum_squares. Raises ValueError for empty
    input or invalid bins (for CUDA input, "too many bins for data range" when the
    result is first read), TypeError for unsupported types.
    """
    named = [("values", _tensor.describe(values))]
    return _results(named, launch(named, bins, max_bins, backend, stream))["values"]


@_tensor.untraced
def histograms(named_tensors, bins="tensorflow", max_bins=None, backend=None, stream=None, group=None):
    """Histograms of many tensors at once (a model's parameters and gradients).

    named_tensors: a mapping or an iterable of (name, tensor) pairs, e.g.
    ``model.named_parameters()``; tensors of mixed sizes, dtypes and devices. All tensors
    on one device go through one backend call. Returns ``{name: HistogramResult}`` in
    input order. Raises ValueError naming the first empty tensor or duplicate name.

    group: a torch.distributed group (True: the world). Every rank calls with the same
    names; each result is the histogram of the full logical tensor (DTensor shards, or
    every rank's part of a plain tensor), reduced with one collective, the same on every
    rank. See tbfast/distributed.py for the rules.
    """
    if group is not None:
        from . import distributed

        named = distributed.describe_local(named_tensors)
        group = distributed.resolve_group(group)
    else:
        named = describe_named(named_tensors)
    results = _results(named, launch(named, bins, max_bins, backend, stream, group))
    return {name: results[name] for name, _ in named}


def describe_named(named_tensors):
    """[(name, Desc)] of a mapping or iterable of (name, tensor). TypeError naming the
    argument for anything else (an item that is not a pair, a name that is not a
    hashable tag); ValueError on a duplicate name."""
    items = named_tensors.items() if hasattr(named_tensors, "items") else named_tensors
    try:
        items = iter(items)
    except TypeError:
        raise TypeError("named_tensors must be a mapping or an iterable of (name, tensor) pairs, got "
                        f"{type(named_tensors).__name__}") from None
    named = []
    seen = set()
    for i, item in enumerate(items):
        try:
            if isinstance(item, (str, bytes)):
                raise TypeError
            name, t = item
        except (TypeError, ValueError):
            raise TypeError(f"named_tensors item {i} must be a (name, tensor) pair, got {item!r:.80}") from None
        try:
            duplicate = name in seen
        except TypeError:
            raise TypeError(f"named_tensors item {i}: tag must be a str, got {type(name).__name__} "
                            f"{name!r:.80}") from None
        if duplicate:
            raise ValueError(f"histograms: duplicate name {name!r}")
        seen.add(name)
        named.append((name, _tensor.describe(t, name=repr(name))))
    return named
