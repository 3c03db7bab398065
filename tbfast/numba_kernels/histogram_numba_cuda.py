"""Numba CUDA fallback for the histogram op (used when tbfast._C_cuda is not built).

Same semantics as csrc/histogram.h (NumPy's np.histogram on float64), written for
numba-cuda without warp intrinsics, so the very same kernels run under the Numba CUDA
simulator (NUMBA_ENABLE_CUDASIM=1), where the tests exercise them.

Per tensor, on one stream, three launches (plus one zeroing launch per job):

* ``count_edges`` / ``count_uniform`` (grid G = min(chunks, MAX_BLOCKS) blocks of TPB
  threads; block b takes the CHUNK-element chunks b, b + G, b + 2G, ..., thread k reading
  elements base + j*TPB + k, j < ITEMS: coalesced). Each block zeroes a shared histogram
  of B + 2 int32 slots (slot 0: below / not finite, slot B + 1: above, bin b in slot
  b + 1), fills it with shared-memory atomics, then adds its non-zero bin slots to
  out.counts[t] with global atomics; above SMEM_MAX_BINS bins it adds straight to global
  memory. For edges and explicit ranges the same pass also accumulates the statistics:
  each thread keeps finite min/max/sum/sumsq and NaN/+Inf/-Inf counts of its elements in
  registers, and the block combines them with a fixed shared-memory tree (FAN-way,
  syncthreads between levels) into its partial in scratch.
* ``reduce``: one block; thread k folds a contiguous run of the partials in block order,
  then the same fixed tree; thread 0 writes out.stats[t] and out.nonfinite[t]. G depends
  only on the tensor's length, so sums are bit-for-bit reproducible.
* uniform-auto instead runs ``stats`` (the statistics half alone), ``reduce``, then
  ``count_uniform``, whose threads read the range (auto_range of min, max) from the
  device stats: the host never waits for the device.

Element offsets are int64 throughout; G is raised when a block would see more than
2^30 elements so the int32 shared counters cannot overflow. Float16 and bfloat16 arrive
as raw 16-bit patterns (int16 views) and are decoded exactly with ldexp; bool arrives as
uint8; everything else is cast to float64 the way NumPy's astype does.
"""

import math
from contextlib import nullcontext

import numpy as np
import numba
from numba import cuda

from .. import _dtypes
from .histogram_numba import account

TPB = 128  # threads per block (a power of two, like FAN)
FAN = 16  # fan-in of the block reduction tree (two levels for 128 threads: few syncthreads)
ITEMS = 8  # elements per thread per chunk
CHUNK = TPB * ITEMS  # elements per chunk
MAX_BLOCKS = 1024  # grid cap: blocks stride over chunks beyond it
SMEM_MAX_BINS = 8192  # above this many bins, count with global atomics
_MAX_BLOCK_ELEMS = 1 << 30  # keeps the per-block int32 shared counters exact

_F64, _I64, _I32 = numba.float64, numba.int64, numba.int32  # shared-array element types


def _simulator():
    try:
        from numba.cuda.core import config
    except ImportError:  # older numba-cuda layouts
        from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", False))


SIMULATOR = _simulator()


# ---------------------------------------------------------------------------------------
# Device functions. Kernels are built per load kind by _KERNELS (lazily, first call),
# so that only the loader of that kind is typed; numba compiles them per signature.
# ---------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _load_plain(data, i):
    return np.float64(data[i])


@cuda.jit(device=True)
def _float16_bits(b, mbits, bias):
    """The exact value of a 16-bit float's bits b: sign, (15 - mbits)-bit exponent with
    this bias, mbits-bit mantissa (float16: 10, 15; bfloat16: 7, 127)."""
    emask = (1 << (15 - mbits)) - 1
    e = (b >> mbits) & emask
    m = b & ((1 << mbits) - 1)
    if e == emask:
        v = math.inf if m == 0 else math.nan
    elif e == 0:
        v = math.ldexp(np.float64(m), int(1 - bias - mbits))
    else:
        v = math.ldexp(np.float64(m | (1 << mbits)), int(e - bias - mbits))
    if (b >> 15) != 0:
        v = -v
    return v


@cuda.jit(device=True)
def _load_f16(data, i):
    return _float16_bits(np.int32(data[i]) & 0xFFFF, 10, 15)


@cuda.jit(device=True)
def _load_bf16(data, i):
    return _float16_bits(np.int32(data[i]) & 0xFFFF, 7, 127)


@cuda.jit(device=True)
def _tree_reduce(tid, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf):
    """Fixed-order tree over the TPB slots into slot 0, FAN slots per node (128 -> 8 -> 1):
    slot k of a level folds slots k, k + w, ..., k + (fan - 1) * w of the one below, in
    that order. Callers syncthreads before; every level ends with one."""
    width = TPB
    while width > 1:
        fan = FAN if width > FAN else width
        w = width // fan
        if tid < w:
            mn = s_mn[tid]
            mx = s_mx[tid]
            s = s_sum[tid]
            q = s_sq[tid]
            nan = s_nan[tid]
            pinf = s_pinf[tid]
            ninf = s_ninf[tid]
            for m in range(1, fan):
                j = tid + m * w
                mn = min(mn, s_mn[j])
                mx = max(mx, s_mx[j])
                s += s_sum[j]
                q += s_sq[j]
                nan += s_nan[j]
                pinf += s_pinf[j]
                ninf += s_ninf[j]
            s_mn[tid] = mn
            s_mx[tid] = mx
            s_sum[tid] = s
            s_sq[tid] = q
            s_nan[tid] = nan
            s_pinf[tid] = pinf
            s_ninf[tid] = ninf
        cuda.syncthreads()
        width = w


@cuda.jit(device=True)
def _edges_slot(v, edges, ne):
    """Slot of v among ne increasing edges: 0 below or NaN, ne (= bins + 1) above,
    else bucket + 1 (csrc/histogram.h edges_bucket: upper_bound, last bin closed)."""
    if not (v >= edges[0]):
        return np.int64(0)
    if v > edges[ne - 1]:
        return np.int64(ne)
    lo = np.int64(0)
    hi = np.int64(ne)
    while lo < hi:  # upper_bound: number of edges <= v (>= 1 here)
        mid = (lo + hi) >> 1
        if edges[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    if lo == ne:  # v == last edge: the last bin is closed
        return np.int64(ne - 1)
    return lo


@cuda.jit(device=True)
def _uniform_edge(i, n, first, last, denom, step):
    # csrc/histogram.h UniformBins::edge: numpy.linspace(first, last, n + 1)[i]
    if i == n:
        return last
    if step == 0.0:
        return (np.float64(i) / np.float64(n)) * denom + first
    return np.float64(i) * step + first


@cuda.jit(device=True)
def _uniform_slot(x, first, last, denom, step, n):
    """Slot of x in n equal bins over [first, last]: 0 below or NaN, n + 1 above, else
    bucket + 1 (csrc/histogram.h UniformBins::bucket)."""
    if not (x >= first and x <= last):
        if x > last:
            return n + 1
        return np.int64(0)
    f = ((x - first) / denom) * np.float64(n)
    idx = np.int64(0)
    if f >= 0.0 and f <= np.float64(n):  # NaN-safe clamp before the cast
        idx = np.int64(f)
    if idx == n:
        idx -= 1
    if x < _uniform_edge(idx, n, first, last, denom, step):
        idx -= 1
    if idx != n - 1 and x >= _uniform_edge(idx + 1, n, first, last, denom, step):
        idx += 1
    if idx < 0:
        idx = np.int64(0)
    return idx + 1


@cuda.jit(device=True)
def _zero_hist(tid, hist, nslots):
    j = tid
    while j < nslots:
        hist[j] = 0
        j += TPB
    cuda.syncthreads()


@cuda.jit(device=True)
def _flush_hist(tid, hist, counts, nb):
    """Add the block's non-zero bin slots (1..nb) to counts[0..nb-1] (global atomics)."""
    cuda.syncthreads()
    j = tid + 1
    while j <= nb:
        n = hist[j]
        if n != 0:
            cuda.atomic.add(counts, j - 1, np.int64(n))
        j += TPB


@cuda.jit(device=True)
def _block_partial(tid, mn, mx, s, q, nan, pinf, ninf, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf,
                   part_f, part_i):
    """Reduce the threads' stats (fixed tree) into the partial of this block."""
    s_mn[tid] = mn
    s_mx[tid] = mx
    s_sum[tid] = s
    s_sq[tid] = q
    s_nan[tid] = nan
    s_pinf[tid] = pinf
    s_ninf[tid] = ninf
    cuda.syncthreads()
    _tree_reduce(tid, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf)
    if tid == 0:
        b = cuda.blockIdx.x
        part_f[b, 0] = s_mn[0]
        part_f[b, 1] = s_mx[0]
        part_f[b, 2] = s_sum[0]
        part_f[b, 3] = s_sq[0]
        part_i[b, 0] = s_nan[0]
        part_i[b, 1] = s_pinf[0]
        part_i[b, 2] = s_ninf[0]


@cuda.jit
def _zero_i64(arr):
    i = np.int64(cuda.blockIdx.x) * TPB + cuda.threadIdx.x
    stride = np.int64(cuda.gridDim.x) * TPB
    while i < arr.shape[0]:
        arr[i] = 0
        i += stride


@cuda.jit
def _reduce(part_f, part_i, nparts, stats, nonfinite, t):
    s_mn = cuda.shared.array(TPB, _F64)
    s_mx = cuda.shared.array(TPB, _F64)
    s_sum = cuda.shared.array(TPB, _F64)
    s_sq = cuda.shared.array(TPB, _F64)
    s_nan = cuda.shared.array(TPB, _I64)
    s_pinf = cuda.shared.array(TPB, _I64)
    s_ninf = cuda.shared.array(TPB, _I64)
    tid = cuda.threadIdx.x
    per = (nparts + TPB - 1) // TPB
    lo = per * tid
    hi = min(nparts, lo + per)
    mn = math.inf
    mx = -math.inf
    s = 0.0
    q = 0.0
    nan = np.int64(0)
    pinf = np.int64(0)
    ninf = np.int64(0)
    j = lo
    while j < hi:  # partials in order
        mn = min(mn, part_f[j, 0])
        mx = max(mx, part_f[j, 1])
        s += part_f[j, 2]
        q += part_f[j, 3]
        nan += part_i[j, 0]
        pinf += part_i[j, 1]
        ninf += part_i[j, 2]
        j += 1
    s_mn[tid] = mn
    s_mx[tid] = mx
    s_sum[tid] = s
    s_sq[tid] = q
    s_nan[tid] = nan
    s_pinf[tid] = pinf
    s_ninf[tid] = ninf
    cuda.syncthreads()
    _tree_reduce(tid, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf)
    if tid == 0:
        stats[t, 0] = s_mn[0]
        stats[t, 1] = s_mx[0]
        stats[t, 2] = s_sum[0]
        stats[t, 3] = s_sq[0]
        nonfinite[t, 0] = s_nan[0]
        nonfinite[t, 1] = s_pinf[0]
        nonfinite[t, 2] = s_ninf[0]


_account = cuda.jit(device=True)(account)  # the CPU fallback's, as a device function


def _build(load):
    """Stats and count kernels reading elements with the device function ``load``.

    The count kernels also produce the per-block stats partials when ``with_stats``
    (kEdges / kUniform: one pass over the data, as in the C++ kernel); uniform-auto runs
    ``stats`` first since its range comes from them. Each of the three declares the same
    seven shared arrays on separate lines (the simulator keys shared arrays by line)."""

    @cuda.jit
    def stats(data, numel, nchunks, part_f, part_i):
        s_mn = cuda.shared.array(TPB, _F64)
        s_mx = cuda.shared.array(TPB, _F64)
        s_sum = cuda.shared.array(TPB, _F64)
        s_sq = cuda.shared.array(TPB, _F64)
        s_nan = cuda.shared.array(TPB, _I64)
        s_pinf = cuda.shared.array(TPB, _I64)
        s_ninf = cuda.shared.array(TPB, _I64)
        tid = cuda.threadIdx.x
        mn = math.inf
        mx = -math.inf
        s = 0.0
        q = 0.0
        nan = np.int64(0)
        pinf = np.int64(0)
        ninf = np.int64(0)
        c = np.int64(cuda.blockIdx.x)
        while c < nchunks:
            base = c * CHUNK + tid
            for k in range(ITEMS):
                i = base + k * TPB
                if i < numel:
                    mn, mx, s, q, nan, pinf, ninf = _account(load(data, i), mn, mx, s, q, nan, pinf, ninf)
            c += cuda.gridDim.x
        _block_partial(tid, mn, mx, s, q, nan, pinf, ninf, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf,
                       part_f, part_i)

    @cuda.jit
    def count_edges(data, numel, nchunks, edges, counts, use_smem, with_stats, part_f, part_i):
        hist = cuda.shared.array(0, _I32)  # dynamic: bins + 2 slots when use_smem
        s_mn = cuda.shared.array(TPB, _F64)
        s_mx = cuda.shared.array(TPB, _F64)
        s_sum = cuda.shared.array(TPB, _F64)
        s_sq = cuda.shared.array(TPB, _F64)
        s_nan = cuda.shared.array(TPB, _I64)
        s_pinf = cuda.shared.array(TPB, _I64)
        s_ninf = cuda.shared.array(TPB, _I64)
        tid = cuda.threadIdx.x
        nb = counts.shape[0]
        ne = edges.shape[0]
        if use_smem:
            _zero_hist(tid, hist, nb + 2)
        mn = math.inf
        mx = -math.inf
        s = 0.0
        q = 0.0
        nan = np.int64(0)
        pinf = np.int64(0)
        ninf = np.int64(0)
        c = np.int64(cuda.blockIdx.x)
        while c < nchunks:
            base = c * CHUNK + tid
            for k in range(ITEMS):
                i = base + k * TPB
                if i < numel:
                    v = load(data, i)
                    if with_stats:
                        mn, mx, s, q, nan, pinf, ninf = _account(v, mn, mx, s, q, nan, pinf, ninf)
                    slot = _edges_slot(v, edges, ne)
                    if slot >= 1 and slot <= nb:
                        if use_smem:
                            cuda.atomic.add(hist, slot, 1)
                        else:
                            cuda.atomic.add(counts, slot - 1, 1)
            c += cuda.gridDim.x
        if use_smem:
            _flush_hist(tid, hist, counts, nb)
        if with_stats:
            _block_partial(tid, mn, mx, s, q, nan, pinf, ninf, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf,
                           part_f, part_i)

    @cuda.jit
    def count_uniform(data, numel, nchunks, ranges, auto, stats, t, counts, use_smem, with_stats, part_f, part_i):
        hist = cuda.shared.array(0, _I32)  # dynamic: bins + 2 slots when use_smem
        s_mn = cuda.shared.array(TPB, _F64)
        s_mx = cuda.shared.array(TPB, _F64)
        s_sum = cuda.shared.array(TPB, _F64)
        s_sq = cuda.shared.array(TPB, _F64)
        s_nan = cuda.shared.array(TPB, _I64)
        s_pinf = cuda.shared.array(TPB, _I64)
        s_ninf = cuda.shared.array(TPB, _I64)
        tid = cuda.threadIdx.x
        nb = counts.shape[0]
        first = ranges[t, 0]  # explicit ranges: [T, 2] in device memory (read here, never on the host)
        last = ranges[t, 1]
        if auto:  # csrc/histogram.h auto_range, from the device stats of tensor t
            lo = stats[t, 0]
            hi = stats[t, 1]
            if not (lo <= hi):
                first = 0.0
                last = 1.0
            else:
                if lo == hi:
                    lo -= 0.5
                    hi += 0.5
                first = lo
                last = hi
        denom = last - first
        step = denom / np.float64(nb)
        if use_smem:
            _zero_hist(tid, hist, nb + 2)
        mn = math.inf
        mx = -math.inf
        s = 0.0
        q = 0.0
        nan = np.int64(0)
        pinf = np.int64(0)
        ninf = np.int64(0)
        c = np.int64(cuda.blockIdx.x)
        while c < nchunks:
            base = c * CHUNK + tid
            for k in range(ITEMS):
                i = base + k * TPB
                if i < numel:
                    v = load(data, i)
                    if with_stats:
                        mn, mx, s, q, nan, pinf, ninf = _account(v, mn, mx, s, q, nan, pinf, ninf)
                    slot = _uniform_slot(v, first, last, denom, step, nb)
                    if slot >= 1 and slot <= nb:
                        if use_smem:
                            cuda.atomic.add(hist, slot, 1)
                        else:
                            cuda.atomic.add(counts, slot - 1, 1)
            c += cuda.gridDim.x
        if use_smem:
            _flush_hist(tid, hist, counts, nb)
        if with_stats:
            _block_partial(tid, mn, mx, s, q, nan, pinf, ninf, s_mn, s_mx, s_sum, s_sq, s_nan, s_pinf, s_ninf,
                           part_f, part_i)

    return stats, count_edges, count_uniform


class LazyKernels:
    """Kernels built on first use, once per set of device functions: ``by_code`` maps a
    tbfast dtype code to the arguments of ``build`` for it (a tuple), ``default`` serves
    every other code (None: such codes raise KeyError). Calling it with a dtype code
    returns what ``build`` made; its length is the number of builds so far (none at
    import, so importing compiles nothing)."""

    def __init__(self, build, by_code, default=None):
        self._build, self._by_code, self._default, self._built = build, by_code, default, {}

    def __call__(self, code):
        args = self._by_code.get(code, self._default)
        if args is None:
            raise KeyError(f"no Numba CUDA kernel for dtype code {code}")
        k = self._built.get(args)
        if k is None:
            k = self._built[args] = self._build(*args)
        return k

    def __len__(self):
        return len(self._built)


_KERNELS = LazyKernels(lambda load: _build(load), {_dtypes.FLOAT16: (_load_f16,), _dtypes.BFLOAT16: (_load_bf16,)},
                       default=(_load_plain,))


# ---------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------


def _as_numba(t):
    """A torch tensor as a kernel argument: a NumPy view under the simulator (its kernel
    arguments must be np.ndarray), a zero-copy device array on a GPU. 16-bit floats are
    passed as int16 bit patterns, bool as uint8."""
    import torch

    t = t.detach()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.view(torch.uint8)
    if SIMULATOR:
        arr = t.numpy()
        # the simulator copies every array argument back after the launch
        return arr if arr.flags.writeable else arr.copy()
    return cuda.as_cuda_array(t, sync=False)


_STREAMS = {}
_EDGES = {}
_EDGES_CACHE_SIZE = 16


def _stream(device_index, handle):
    key = (device_index, handle)
    s = _STREAMS.get(key)
    if s is None:
        s = _STREAMS[key] = cuda.external_stream(handle)
    return s


def _device_edges(edges, device_index, handle, stream):
    # Uploaded once per (device, stream, edges) and reused on that stream only, so the
    # stream orders the upload before every read (no host synchronisation).
    key = (device_index, handle, edges.tobytes())
    d = _EDGES.get(key)
    if d is None:
        if len(_EDGES) >= _EDGES_CACHE_SIZE:
            _EDGES.pop(next(iter(_EDGES)))
        d = _EDGES[key] = cuda.to_device(edges, stream=stream)
    return d


def _grid(numel):
    """(chunks, blocks) of a tensor: depends on its length only (deterministic sums)."""
    nchunks = (numel + CHUNK - 1) // CHUNK
    min_blocks = (nchunks * CHUNK + _MAX_BLOCK_ELEMS - 1) // _MAX_BLOCK_ELEMS
    return nchunks, min(nchunks, max(MAX_BLOCKS, min_blocks))


def run(job):
    """Fill job.out (counts, stats, nonfinite) for job.descs under job.spec; return job.out.

    Everything is enqueued on job.stream (torch's current stream when None) and nothing
    waits for the device or copies to the host."""
    out = job.out
    if SIMULATOR:
        _run(job, stream=0, device_index=None, handle=None)
        return out
    import torch

    dev = out.counts.device
    if dev.type != "cuda":
        raise RuntimeError("histogram_numba_cuda needs CUDA tensors (or NUMBA_ENABLE_CUDASIM=1)")
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    handle = int(job.stream) if job.stream is not None else torch.cuda.current_stream(idx).cuda_stream
    with cuda.gpus[idx]:
        stream = _stream(idx, handle) if handle else cuda.legacy_default_stream()
        # Scratch comes from torch's caching allocator, tied to the launch stream so that
        # it is not reused by other streams while the kernels may still read it.
        with torch.cuda.stream(torch.cuda.ExternalStream(handle, device=dev)) if handle else nullcontext():
            _run(job, stream=stream, device_index=idx, handle=handle)
    return out


def _empty(shape, dtype, like):
    import torch

    return torch.empty(shape, dtype=dtype, device=like.device)


def _run(job, stream, device_index, handle):
    import torch

    out, spec = job.out, job.spec
    T = len(job.descs)
    B = int(spec.num_bins)
    counts = _as_numba(out.counts.view(-1))
    stats = _as_numba(out.stats)
    nonfinite = _as_numba(out.nonfinite)

    if T * B:
        zb = min(MAX_BLOCKS, (T * B + CHUNK - 1) // CHUNK)
        _zero_i64[zb, TPB, stream](counts)

    grids = [_grid(int(d.numel)) for d in job.descs]
    G = max([g for _, g in grids] + [1])
    part_f = _as_numba(_empty((G, 4), torch.float64, out.stats))
    part_i = _as_numba(_empty((G, 3), torch.int64, out.stats))

    mode = int(spec.mode)
    use_smem = B <= SMEM_MAX_BINS
    shmem = (B + 2) * 4 if use_smem else 0
    if mode == 0:
        edges = np.array(spec.edges, dtype=np.float64)  # a writable copy (the simulator writes arguments back)
        if not SIMULATOR:
            edges = _device_edges(edges, device_index, handle, stream)
    # Uniform ranges on the device: a tensor already there (group=: reduced over the ranks,
    # never read on the host), else one pinned asynchronous upload. Uniform-auto reads its
    # range from the stats instead (the kernel ignores this argument then).
    ranges = stats
    if mode == 1:
        from .. import _device

        r = spec.ranges
        if not torch.is_tensor(r):
            r = _device.to_device(np.ascontiguousarray(r, dtype=np.float64).reshape(T, 2), out.stats.device)
        ranges = _as_numba(r.to(torch.float64).contiguous())

    for t, desc in enumerate(job.descs):
        nchunks, g = grids[t]
        numel = int(desc.numel)
        k_stats, k_edges, k_uniform = _KERNELS(int(desc.dtype))
        data = _as_numba(desc.flat_owner()) if g else None
        count = g and B
        if count and mode == 0:  # counts and stats in one pass
            k_edges[g, TPB, stream, shmem](data, numel, nchunks, edges, _as_numba(out.counts[t]), use_smem, True,
                                          part_f, part_i)
        elif count and mode == 1:
            k_uniform[g, TPB, stream, shmem](data, numel, nchunks, ranges, False, stats, t, _as_numba(out.counts[t]),
                                            use_smem, True, part_f, part_i)
        elif g:  # uniform-auto: the range needs the stats first
            k_stats[g, TPB, stream](data, numel, nchunks, part_f, part_i)
        _reduce[1, TPB, stream](part_f, part_i, g, stats, nonfinite, t)
        if count and mode == 2:
            k_uniform[g, TPB, stream, shmem](data, numel, nchunks, ranges, True, stats, t, _as_numba(out.counts[t]),
                                            use_smem, False, part_f, part_i)
