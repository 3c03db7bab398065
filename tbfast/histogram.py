"""Histogram op: TensorBoard-exact bucket counts and statistics, computed where the data is.

Public API: :func:`histogram`, :func:`histograms`, :func:`default_edges`,
:class:`HistogramResult`. Bucket semantics are NumPy's ``np.histogram`` on float64, which
is what ``torch.utils.tensorboard`` runs (spec 1.3); see csrc/histogram.h for the kernel.
"""

import functools
import math
import operator

import numpy as np

from . import _dtypes, _native, _tensor, backends

# NumPy's bin estimators, which torch passes straight to np.histogram (spec 1.2).
ESTIMATORS = ("auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt")

EDGES, UNIFORM, UNIFORM_AUTO = 0, 1, 2  # csrc/histogram.h HistMode
_LOOKUP_DOUBLES = 3 * (1 << 16) + 1  # csrc/histogram.h EdgeLookup: 16 + 8 bytes per key, + 8


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
    edges = np.frombuffer(edges_bytes, dtype=np.float64)
    mod, why = _native.cpu()
    lookup = np.zeros(_LOOKUP_DOUBLES, dtype=np.float64)
    if mod is None:
        raise backends.BackendUnavailable(why)
    mod.histogram_build_lookup(edges.ctypes.data, edges.size, lookup.ctypes.data)
    return edges, lookup


class BinSpec:
    """Resolved ``bins`` argument: mode, bin count, shared edges (EDGES mode) or
    per-tensor ranges (UNIFORM), or None ranges to be taken from the data (UNIFORM_AUTO)."""

    __slots__ = ("mode", "num_bins", "edges", "ranges")

    def __init__(self, mode, num_bins, edges=None, ranges=None):
        self.mode, self.num_bins, self.edges, self.ranges = mode, num_bins, edges, ranges


def _resolve_bins(bins, flats):
    if isinstance(bins, str):
        if bins == "tensorflow":
            edges = _default_edges()
            return BinSpec(EDGES, edges.size - 1, edges=edges)
        if bins in ESTIMATORS:
            return _estimator_bins(bins, flats)
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


def _estimator_bins(name, flats):
    # Quantile-based estimators need the data on the host: equal-width bins whose count
    # NumPy chooses; counting then runs on the uniform path like np.histogram does.
    ranges, counts = [], set()
    for f in flats:
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
# Backends. Each takes (flats, spec) and returns (counts[T, B] int64, stats[T, 4] float64,
# nonfinite[T, 3] int64) as NumPy arrays (CPU) or torch tensors (on the inputs' device).
# ---------------------------------------------------------------------------------------


@backends.implements("histogram", "native", "cpu")
def _native_cpu(flats, spec):
    mod, why = _native.cpu()
    T, B = len(flats), spec.num_bins
    data = np.array([f.ptr for f in flats], dtype=np.uint64)
    numels = np.array([f.numel for f in flats], dtype=np.int64)
    codes = np.array([f.dtype for f in flats], dtype=np.int32)
    counts = np.zeros((T, B), dtype=np.int64)
    stats = np.zeros((T, 4), dtype=np.float64)
    nonfinite = np.zeros((T, 3), dtype=np.int64)
    edges_ptr = lookup_ptr = ranges_ptr = 0
    if spec.mode == EDGES:
        edges, lookup = _lookup_for(spec.edges.tobytes())
        edges_ptr, lookup_ptr = edges.ctypes.data, lookup.ctypes.data
    elif spec.mode == UNIFORM:
        ranges = np.ascontiguousarray(spec.ranges, dtype=np.float64)
        ranges_ptr = ranges.ctypes.data
    threads = _native.num_threads()
    args = (T, data.ctypes.data, numels.ctypes.data, codes.ctypes.data, spec.mode, B, edges_ptr, lookup_ptr,
            ranges_ptr, counts.ctypes.data, stats.ctypes.data, nonfinite.ctypes.data)
    if spec.mode == UNIFORM_AUTO:
        mod.histogram(*args, True, True, threads)  # min/max first: they set the range
        mod.histogram(*args, False, False, threads)
    else:
        mod.histogram(*args, False, True, threads)
    return counts, stats, nonfinite


@backends.implements("histogram", "numba", "cpu")
def _numba_cpu(flats, spec):
    from .numba_kernels import histogram_numba as nk

    T, B = len(flats), spec.num_bins
    counts = np.zeros((T, B), dtype=np.int64)
    stats = np.zeros((T, 4), dtype=np.float64)
    nonfinite = np.zeros((T, 3), dtype=np.int64)
    for t, f in enumerate(flats):
        arr, kind = nk.prepare(f.numpy(), f.dtype)
        nk.stats(arr, kind, stats[t], nonfinite[t])
        if spec.mode == EDGES:
            nk.count_edges(arr, kind, spec.edges, counts[t])
        else:
            first, last = spec.ranges[t] if spec.mode == UNIFORM else _auto_range(stats[t, 0], stats[t, 1])
            nk.count_uniform(arr, kind, float(first), float(last), counts[t])
    return counts, stats, nonfinite


def _reference_impl(flats, spec):
    """Plain torch ops on the inputs' device: float64 copy, searchsorted, scatter_add.
    No host synchronisation; slow and memory-hungry, but obviously NumPy-equivalent."""
    import torch

    T, B = len(flats), spec.num_bins
    dev = torch.device(flats[0].device, flats[0].device_index) if flats[0].device == "cuda" else torch.device("cpu")
    counts = torch.zeros((T, B), dtype=torch.int64, device=dev)
    stats = torch.zeros((T, 4), dtype=torch.float64, device=dev)
    nonfinite = torch.zeros((T, 3), dtype=torch.int64, device=dev)
    for t, f in enumerate(flats):
        x = _torch_float64(f, dev)
        fin = torch.isfinite(x)
        xf = torch.where(fin, x, torch.zeros((), dtype=x.dtype, device=dev))
        inf = torch.tensor(math.inf, dtype=torch.float64, device=dev)
        stats[t, 0] = torch.where(fin, x, inf).min() if x.numel() else inf
        stats[t, 1] = torch.where(fin, x, -inf).max() if x.numel() else -inf
        stats[t, 2] = xf.sum()
        stats[t, 3] = (xf * xf).sum()
        nonfinite[t, 0] = torch.isnan(x).sum()
        nonfinite[t, 1] = (x == math.inf).sum()
        nonfinite[t, 2] = (x == -math.inf).sum()
        if spec.mode == EDGES:
            edges = torch.tensor(spec.edges, device=dev)
            ub = torch.searchsorted(edges, xf, right=True)
            slot = ub - (xf == edges[-1]).long()  # last bin is closed
        else:
            if spec.mode == UNIFORM:
                first, last = (torch.tensor(v, dtype=torch.float64, device=dev) for v in spec.ranges[t])
            else:
                first, last = _torch_auto_range(stats[t, 0], stats[t, 1])
            slot = _torch_uniform_slot(xf, first, last, B)
        slot = torch.where(fin, slot, torch.zeros_like(slot))
        full = torch.zeros(B + 2, dtype=torch.int64, device=dev)
        full.scatter_add_(0, slot, torch.ones_like(slot))
        counts[t] = full[1:B + 1]
    return counts, stats, nonfinite


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


backends.implements("histogram", "reference", "cpu")(_reference_impl)
backends.implements("histogram", "reference", "cuda")(_reference_impl)


# ---------------------------------------------------------------------------------------
# Results and the public API
# ---------------------------------------------------------------------------------------


class HistogramResult:
    """Histogram of one tensor.

    Array fields (torch tensors on the input's device for torch input, NumPy arrays for
    everything else): ``counts`` int64 [B] (after ``max_bins`` merging), ``limits``
    float64 [B + 1] bucket edges, ``stats`` float64 [4] (finite min, max, sum, sum of
    squares) and ``nonfinite`` int64 [3] (NaN, +Inf, -Inf counts). Scalar properties
    (``min``, ``max``, ``sum``, ``sum_squares``, ``num``, ``nan_count``...) copy to the host
    when read. ``num`` counts the finite values; values beyond the outer edges are
    counted in ``num`` and the statistics but in no bucket, as in torch.
    """

    __slots__ = ("_arrays", "_host", "numel", "backend", "_torch_out", "support")

    def __init__(self, counts, limits, stats, nonfinite, numel, backend, torch_out, support=None):
        self._arrays = (counts, limits, stats, nonfinite)  # NumPy (CPU kernels) or torch
        self._host = None
        self.numel, self.backend, self._torch_out = numel, backend, torch_out
        self.support = support  # (first, last + 1) non-empty bins if known, (0, 0) if none

    def _out(self, i):
        x = self._arrays[i]
        if self._torch_out and not _tensor.is_torch_tensor(x):
            import torch

            return torch.from_numpy(np.array(x) if not x.flags.writeable else x)
        if not self._torch_out and _tensor.is_torch_tensor(x):
            return x.cpu().numpy()
        return x

    counts = property(lambda self: self._out(0))
    limits = property(lambda self: self._out(1))
    stats = property(lambda self: self._out(2))
    nonfinite = property(lambda self: self._out(3))

    def host(self):
        """(counts, limits, stats, nonfinite) as host NumPy arrays (cached)."""
        if self._host is None:
            arrays = self._arrays
            if not all(isinstance(x, np.ndarray) for x in arrays):
                arrays = tuple(x.cpu().numpy() if _tensor.is_torch_tensor(x) else np.asarray(x) for x in arrays)
            self._host = arrays
        return self._host

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


def _check_max_bins(max_bins):
    if max_bins is None:
        return
    if isinstance(max_bins, bool) or not isinstance(max_bins, (int, np.integer)) or max_bins < 1:
        raise ValueError(f"max_bins must be a positive int or None, got {max_bins!r}")


def _compute(named_flats, bins, max_bins, backend):
    """Histograms of [(name, Flat)] grouped per device, one backend call per group."""
    _check_max_bins(max_bins)
    for name, f in named_flats:
        if f.numel == 0:
            raise ValueError(f"histogram of {name!r}: the tensor has no elements")
    groups = {}
    for i, (name, f) in enumerate(named_flats):
        groups.setdefault((f.device, f.device_index), []).append(i)
    results = [None] * len(named_flats)
    for (device, _), idx in groups.items():
        flats = [named_flats[i][1] for i in idx]
        spec = _resolve_bins(bins, flats)
        used, impl = backends.select("histogram", device, backend)
        counts, stats, nonfinite = impl(flats, spec)
        host_stats = None
        support = _supports(counts) if max_bins is None and isinstance(counts, np.ndarray) else None
        for row, i in enumerate(idx):
            f = flats[row]
            if spec.mode == UNIFORM_AUTO:
                if host_stats is None:  # CPU: free; CUDA: the limits are what the caller asked for
                    host_stats = stats.cpu().numpy() if _tensor.is_torch_tensor(stats) else stats
                limits = _edges_for(spec, row, host_stats[row])
            else:
                limits = _edges_for(spec, row, None)
            if spec.mode != EDGES and not (limits[:-1] < limits[1:]).all():
                raise ValueError(f"histogram of {named_flats[i][0]!r}: too many bins for data range; cannot create "
                                 f"{spec.num_bins} finite-sized bins over [{limits[0]!r}, {limits[-1]!r}] "
                                 "(numpy raises the same)")
            c, lim = merge_max_bins(counts[row], limits, max_bins)
            results[i] = HistogramResult(c, lim, stats[row], nonfinite[row], f.numel, used, f.is_torch,
                                         None if support is None else support[row])
    return results


def histogram(values, bins="tensorflow", max_bins=None, backend=None):
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

    NaN and +-Inf are never bucketed and never fail: they are counted in the result's
    ``nonfinite`` and left out of min/max/sum/sum_squares. Raises ValueError for empty
    input or invalid bins, TypeError for unsupported types.
    """
    return _compute([("values", _tensor.flat(values))], bins, max_bins, backend)[0]


def histograms(named_tensors, bins="tensorflow", max_bins=None, backend=None):
    """Histograms of many tensors at once (a model's parameters and gradients).

    named_tensors: a mapping or an iterable of (name, tensor) pairs, e.g.
    ``model.named_parameters()``; tensors of mixed sizes, dtypes and devices. All tensors
    on one device go through one native call. Returns ``{name: HistogramResult}`` in
    input order. Raises ValueError naming the first empty tensor or duplicate name.
    """
    items = named_tensors.items() if hasattr(named_tensors, "items") else named_tensors
    named = []
    seen = set()
    for name, t in items:
        if name in seen:
            raise ValueError(f"histograms: duplicate name {name!r}")
        seen.add(name)
        named.append((name, _tensor.flat(t, name=repr(name))))
    results = _compute(named, bins, max_bins, backend)
    return {name: r for (name, _), r in zip(named, results)}
