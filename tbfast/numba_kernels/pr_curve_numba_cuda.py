"""Numba CUDA fallback for the PR-curve op (used when tbfast._C_cuda is not built).

Same semantics as csrc/pr_curve.h and the CPU kernels (csrc/cpu/pr_curve_cpu.cpp,
pr_curve_numba.py): the same buckets (floor(p * (T-1)), the product rounded per
prediction dtype), the same bad-value checks in the same order, softmax / sigmoid in
float64; everything is ADDED into job.state (counts or sums, and bad). Written without
warp intrinsics, so the very same kernels run under the Numba CUDA simulator
(NUMBA_ENABLE_CUDASIM=1), where the tests exercise them.

Launches, all on one stream, nothing read back to the host:

* ``elements`` (probabilities and sigmoid): one work item per prediction e of the
  N x C matrix (row e // C, class e % C), in chunks of CHUNK items; grid
  G = blocks(chunks) of TPB threads, block b taking chunks b, b + G, ..., thread k items
  base + j*TPB + k (coalesced). Row-level checks (weight, class index) are repeated by
  every item of the row and counted as bad by the class-0 item only, so each row counts
  once, as in the CPU's row loop.
* ``rows`` (softmax): one work item per row (max, then a sequential sum of exp(x - max)
  in class order, then one bucket per class), same chunking.
* Unweighted: int64 counts. When C*T*2 <= SMEM_MAX_CELLS each block counts into
  int32 shared counters (zeroed per block) and adds the non-zero ones to the state with
  int64 global atomics; larger curves add straight to the state. G is raised so that no
  block makes more than 2^30 increments (the int32 counters stay exact).
* Weighted: each weight w (0 <= w < 2^63, else a bad weight, kind 5) is added exactly as
  128-bit unsigned fixed point in units of 2^-64 into a scratch [cells, 2] uint64 array
  (low word, high word) zeroed per call: an atomic add of the fraction's 64 bits
  (truncated: weights finer than 2^-64 lose those bits) on the low word, a carry when
  that add wraps, and the integer part on the high word. Integer additions commute, so
  the scratch is the same whatever the order; ``convert`` then adds each touched cell's
  sum, rounded once to float64 (round to nearest even), into state.sums: weighted sums
  are bit-for-bit reproducible run to run (but not np.histogram's rounding order, which
  the CPU kernels follow: results differ from the CPU's by float64 rounding only).
  A cell's per-call sum must stay below 2^64.
* Bad values are counted per thread in registers and added to state.bad with one atomic
  per non-zero kind at the end.

Float16 and bfloat16 predictions arrive as int16 bit patterns and are decoded exactly;
bool labels as uint8 (any non-zero byte is true, as torch and the C++ kernel read them).
"""

import math
from contextlib import nullcontext

import numba
import numpy as np
from numba import cuda

from .. import _dtypes
from .histogram_numba_cuda import SIMULATOR, LazyKernels, _as_numba, _load_bf16, _load_f16, _stream

TPB = 128  # threads per block
ITEMS = 4  # work items per thread per chunk
CHUNK = TPB * ITEMS
MAX_BLOCKS = 1024  # grid cap (raised only to keep per-block int32 counters exact)
SMEM_MAX_CELLS = 8192  # C*T*2 up to this: block-private int32 shared counters (32 KiB)
_MAX_BLOCK_INCREMENTS = 1 << 30
CONVERT_CELLS = 16  # cells per thread of the conversion kernel (grid-stride)

# Must match csrc/pr_curve.h (PRBadKind, PRProbMode).
BAD_NAN, BAD_RANGE, BAD_LOGIT, BAD_LABEL, BAD_INDEX, BAD_WEIGHT = 0, 1, 2, 3, 4, 5
NUM_BAD_KINDS = 6
PROBS, SOFTMAX, SIGMOID = 0, 1, 2
LABEL_INDEX = 1

_I32, _I64, _F64 = numba.int32, numba.int64, numba.float64
_TWO63 = 9223372036854775808.0  # weights at or above 2^63 are bad (fixed-point high word)
_HALF_MIN = np.float32(6.103515625e-05)  # 2^-14, the smallest float16 normal
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U64 = np.uint64(64)
_UMAX = np.uint64(0xFFFFFFFFFFFFFFFF)


# ---------------------------------------------------------------------------------------
# Device functions
# ---------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _load_value(data, i):
    return data[i]  # float32 or float64, as stored


@cuda.jit(device=True)
def _load_half(data, i):
    return np.float32(_load_f16(data, i))  # exact: a float16 is a float32


@cuda.jit(device=True)
def _load_bhalf(data, i):
    return np.float32(_load_bf16(data, i))


@cuda.jit(device=True)
def _bucket_f32(v, tm1f, tm1d, half):
    return np.int64(v * tm1f)  # float32 product, truncated (>= 0: floor)


@cuda.jit(device=True)
def _bucket_f64(v, tm1f, tm1d, half):
    return np.int64(v * tm1d)


@cuda.jit(device=True)
def _round_half(x):
    """x (float64 holding a float32 >= 2^-14) rounded to 11 significant bits, ties to
    even: csrc/pr_curve.h round_to_half_precision."""
    m, e = math.frexp(x)
    q = math.ldexp(m, 11)  # [1024, 2048)
    f = np.float64(np.int64(q))
    d = q - f
    if d > 0.5 or (d == 0.5 and (np.int64(f) & 1) == 1):
        f += 1.0
    return math.ldexp(f, int(e - 11))


@cuda.jit(device=True)
def _bucket_16(v, tm1f, tm1d, half):
    # csrc/pr_curve.h pr_bucket_f16: v is the exact float32 value of a 16-bit float.
    x = v * tm1f  # exact when half: 11 x 11 significant bits
    if not half:
        return np.int64(x)
    if x < _HALF_MIN:
        return np.int64(0)
    return np.int64(_round_half(np.float64(x)))


@cuda.jit(device=True)
def _label_bit(labels, i, label_bool):
    """0/1 label, or -1 when it is neither (bool: any non-zero byte is 1)."""
    v = labels[i]
    if label_bool:
        return np.int64(1) if v != 0 else np.int64(0)
    if v == 0:
        return np.int64(0)
    if v == 1:
        return np.int64(1)
    return np.int64(-1)


@cuda.jit(device=True)
def _label_index(labels, r, label_bool, label_float):
    """Class index of row r, or -1 (csrc/cpu/pr_curve_cpu.cpp Lab::index)."""
    v = labels[r]
    if label_bool:
        return np.int64(1) if v != 0 else np.int64(0)
    if label_float:
        d = np.float64(v)
        if not (d >= 0.0 and d < 9.2e18):
            return np.int64(-1)
        k = np.int64(d)
        return k if np.float64(k) == d else np.int64(-1)
    k = np.int64(v)
    return k if k >= 0 else np.int64(-1)


@cuda.jit(device=True)
def _weight_of(weights, r, has_w, wscalar):
    if has_w:
        return np.float64(weights[r])
    return wscalar


@cuda.jit(device=True)
def _weight_ok(w):
    return w >= 0.0 and w < _TWO63  # NaN and infinities fail too


@cuda.jit(device=True)
def _add_fixed(scr, j, w):
    """Add w (0 <= w < 2^63) to cell j of the 128-bit fixed-point scratch (units 2^-64):
    scr[2j] low word, scr[2j + 1] high word."""
    hi = np.uint64(w)  # integer part (truncation = floor for w >= 0)
    lo = np.uint64(math.ldexp(w - np.float64(hi), 64))  # the fraction's top 64 bits
    k = 2 * j
    if lo != _U0:
        old = cuda.atomic.add(scr, k, lo)
        if old > _UMAX - lo:  # the low word wrapped: carry into the high word
            hi += _U1
    if hi != _U0:
        cuda.atomic.add(scr, k + 1, hi)


@cuda.jit(device=True)
def _fixed_to_f64(hi, lo):
    """(hi * 2^64 + lo) * 2^-64 rounded once to float64 (to nearest, ties to even)."""
    if hi == _U0:
        return math.ldexp(np.float64(lo), -64)  # one rounding: uint64 -> float64
    n = np.int64(0)  # bit length of hi
    t = hi
    while t != _U0:
        t = t >> _U1
        n += 1
    if n == 64:
        top = hi
        sticky = lo != _U0
    else:
        s = np.uint64(n)
        top = (hi << (_U64 - s)) | (lo >> s)  # the 64 leading bits of the 128-bit value
        sticky = (lo & ((_U1 << s) - _U1)) != _U0
    if sticky:
        top = top | _U1  # below the 53 kept bits: makes ties of `top` alone round correctly
    return math.ldexp(np.float64(top), int(n - 64))


@cuda.jit(device=True)
def _add(j, w, weighted, use_smem, hist, counts, scr):
    if weighted:
        _add_fixed(scr, j, w)
    elif use_smem:
        cuda.atomic.add(hist, j, 1)
    else:
        cuda.atomic.add(counts, j, 1)


@cuda.jit(device=True)
def _zero_hist(tid, hist, cells):
    j = tid
    while j < cells:
        hist[j] = 0
        j += TPB
    cuda.syncthreads()


@cuda.jit(device=True)
def _flush(tid, lbad, bad, use_smem, hist, counts, cells):
    """End of a block: its shared counters into the state, its threads' bad counts."""
    for kind in range(NUM_BAD_KINDS):
        if lbad[kind] != 0:
            cuda.atomic.add(bad, kind, lbad[kind])
    if use_smem:
        cuda.syncthreads()
        j = tid
        while j < cells:
            n = hist[j]
            if n != 0:
                cuda.atomic.add(counts, j, np.int64(n))
            j += TPB


@cuda.jit
def _convert(scr, sums, cells):
    """sums[j] += the exact fixed-point sum of cell j, rounded once (touched cells)."""
    j = np.int64(cuda.blockIdx.x) * TPB + cuda.threadIdx.x
    stride = np.int64(cuda.gridDim.x) * TPB
    while j < cells:
        lo = scr[2 * j]
        hi = scr[2 * j + 1]
        if lo != _U0 or hi != _U0:
            sums[j] += _fixed_to_f64(hi, lo)
        j += stride


def _build(load, bucket):
    """The two counting kernels for one prediction loader / bucket rule (per dtype kind);
    numba specialises them per label and weight dtype on first use."""

    @cuda.jit(device=True)
    def element(pred, labels, weights, wscalar, has_w, weighted, e, C, T, tm1f, tm1d, half, label_index,
                label_bool, label_float, sigmoid):
        """(cell, bad kind, weight) of prediction e: cell -1 when not counted, kind -1
        when nothing is bad (or a row-level bad value counted by another class)."""
        r = e
        cl = np.int64(0)
        if C != 1:
            r = e // C
            cl = e - r * C
        w = 1.0
        if weighted:
            w = _weight_of(weights, r, has_w, wscalar)
            if not _weight_ok(w):
                return np.int64(-1), (np.int64(BAD_WEIGHT) if cl == 0 else np.int64(-1)), w
        if label_index:
            idx = _label_index(labels, r, label_bool, label_float)
            if idx < 0 or idx >= C:
                return np.int64(-1), (np.int64(BAD_INDEX) if cl == 0 else np.int64(-1)), w
            pos = np.int64(1) if cl == idx else np.int64(0)
        else:
            pos = _label_bit(labels, e, label_bool)
            if pos < 0:
                return np.int64(-1), np.int64(BAD_LABEL), w
        if sigmoid:
            x = np.float64(load(pred, e))
            if not math.isfinite(x):
                return np.int64(-1), np.int64(BAD_LOGIT), w
            b = np.int64(0)
            if x > -700.0:  # below, 1 / (1 + exp(-x)) * (T-1) < 1e-296: bucket 0 (and no overflow)
                b = np.int64((1.0 / (1.0 + math.exp(-x))) * tm1d)
        else:
            v = load(pred, e)
            if not (v >= 0 and v <= 1):
                return np.int64(-1), (np.int64(BAD_NAN) if v != v else np.int64(BAD_RANGE)), w
            b = bucket(v, tm1f, tm1d, half)
        return (cl * T + b) * 2 + pos, np.int64(-1), w

    @cuda.jit
    def elements(pred, labels, weights, wscalar, has_w, weighted, nitems, nchunks, C, T, tm1f, tm1d, half,
                 label_index, label_bool, label_float, sigmoid, use_smem, counts, scr, bad):
        hist = cuda.shared.array(0, _I32)  # dynamic: C*T*2 int32 counters when use_smem
        lbad = cuda.local.array(NUM_BAD_KINDS, _I64)
        tid = cuda.threadIdx.x
        cells = C * T * 2
        for kind in range(NUM_BAD_KINDS):
            lbad[kind] = 0
        if use_smem:
            _zero_hist(tid, hist, cells)
        c = np.int64(cuda.blockIdx.x)
        while c < nchunks:
            base = c * CHUNK + tid
            for it in range(ITEMS):
                e = base + it * TPB
                if e < nitems:
                    j, kind, w = element(pred, labels, weights, wscalar, has_w, weighted, e, C, T, tm1f, tm1d,
                                         half, label_index, label_bool, label_float, sigmoid)
                    if kind >= 0:
                        lbad[kind] += 1
                    if j >= 0:
                        _add(j, w, weighted, use_smem, hist, counts, scr)
            c += cuda.gridDim.x
        _flush(tid, lbad, bad, use_smem, hist, counts, cells)

    @cuda.jit
    def rows(pred, labels, weights, wscalar, has_w, weighted, num_rows, nchunks, C, T, tm1d, label_index,
             label_bool, label_float, use_smem, counts, scr, bad):
        """Softmax: one row per work item (csrc/cpu/pr_curve_cpu.cpp block_rows)."""
        hist = cuda.shared.array(0, _I32)
        lbad = cuda.local.array(NUM_BAD_KINDS, _I64)
        tid = cuda.threadIdx.x
        cells = C * T * 2
        for kind in range(NUM_BAD_KINDS):
            lbad[kind] = 0
        if use_smem:
            _zero_hist(tid, hist, cells)
        c = np.int64(cuda.blockIdx.x)
        while c < nchunks:
            base = c * CHUNK + tid
            for it in range(ITEMS):
                r = base + it * TPB
                if r < num_rows:
                    w = 1.0
                    ok = True
                    if weighted:
                        w = _weight_of(weights, r, has_w, wscalar)
                        if not _weight_ok(w):
                            lbad[BAD_WEIGHT] += 1
                            ok = False
                    idx = np.int64(-1)
                    if ok and label_index:
                        idx = _label_index(labels, r, label_bool, label_float)
                        if idx < 0 or idx >= C:
                            lbad[BAD_INDEX] += 1
                            ok = False
                    row = r * C
                    mx = -math.inf
                    if ok:
                        nonfinite = np.int64(0)
                        for cl in range(C):
                            v = np.float64(load(pred, row + cl))
                            if not math.isfinite(v):
                                nonfinite += 1
                            elif v > mx:
                                mx = v
                        if nonfinite != 0:
                            lbad[BAD_LOGIT] += nonfinite
                            ok = False
                    if ok:
                        total = 0.0
                        for cl in range(C):  # sequential, in class order: the CPU's sum
                            total += math.exp(np.float64(load(pred, row + cl)) - mx)
                        for cl in range(C):
                            if label_index:
                                pos = np.int64(1) if cl == idx else np.int64(0)
                            else:
                                pos = _label_bit(labels, row + cl, label_bool)
                                if pos < 0:
                                    lbad[BAD_LABEL] += 1
                                    continue
                            p = math.exp(np.float64(load(pred, row + cl)) - mx) / total
                            b = np.int64(p * tm1d)
                            _add((cl * T + b) * 2 + pos, w, weighted, use_smem, hist, counts, scr)
            c += cuda.gridDim.x
        _flush(tid, lbad, bad, use_smem, hist, counts, cells)

    return elements, rows


_KERNELS = LazyKernels(_build, {_dtypes.FLOAT32: (_load_value, _bucket_f32), _dtypes.FLOAT64: (_load_value, _bucket_f64),
                                _dtypes.FLOAT16: (_load_half, _bucket_16), _dtypes.BFLOAT16: (_load_bhalf, _bucket_16)})


# ---------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------


def _arg(x):
    """A kernel argument from a torch tensor (histogram_numba_cuda._as_numba) or, under
    the simulator, a NumPy array (16-bit floats as int16 bits, bool as uint8)."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_:
            return x.view(np.uint8)
        if x.dtype == np.float16:
            return x.view(np.int16)
        return x
    return _as_numba(x)


def _blocks(nchunks, per_item):
    """Grid size: up to MAX_BLOCKS, more when a block would make over 2^30 increments."""
    per_block = max(1, _MAX_BLOCK_INCREMENTS // (CHUNK * max(1, per_item)))
    return max(min(nchunks, MAX_BLOCKS), -(-nchunks // per_block))


def run(job):
    """Add the counts (or weighted sums) and bad values of ``job`` into ``job.state``.

    job: tbfast.pr_curve._Job plus ``state`` (torch tensors on the device: counts int64
    [C, T, 2] or sums float64 [C, T, 2], bad int64 [8]) and optionally ``stream`` (int
    handle; torch's current stream when None). Nothing waits for the device."""
    if job.num_rows == 0:
        return None
    if SIMULATOR:
        _run(job, 0, None)
        return None
    import torch

    dev = job.state.bad.device
    if dev.type != "cuda":
        raise RuntimeError("pr_curve_numba_cuda needs CUDA tensors (or NUMBA_ENABLE_CUDASIM=1)")
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    handle = getattr(job, "stream", None)
    handle = int(handle) if handle is not None else torch.cuda.current_stream(idx).cuda_stream
    with cuda.gpus[idx]:
        stream = _stream(idx, handle) if handle else cuda.legacy_default_stream()
        # Scratch from torch's caching allocator, tied to the launch stream.
        with torch.cuda.stream(torch.cuda.ExternalStream(handle, device=dev)) if handle else nullcontext():
            _run(job, stream, dev)
    return None


def _scratch(n, dtype, dev, zero):
    """n elements of a NumPy dtype: NumPy under the simulator, else a torch tensor on dev
    (as a kernel argument)."""
    if SIMULATOR:
        return np.zeros(n, dtype) if zero else np.empty(n, dtype)
    import torch

    tdtype = {np.int64: torch.int64, np.uint64: torch.int64, np.float64: torch.float64}[dtype]
    t = (torch.zeros if zero else torch.empty)(n, dtype=tdtype, device=dev)
    a = _as_numba(t)
    return a.view(np.uint64) if dtype is np.uint64 else a


def _flat(x):
    return x.reshape(-1) if isinstance(x, np.ndarray) else x.view(-1)


def _run(job, stream, dev):
    state = job.state
    C, T, N = int(job.num_classes), int(job.num_thresholds), int(job.num_rows)
    cells = C * T * 2
    weighted = bool(job.weighted)
    pred = _arg(job.pred.flat_owner())
    labels = _arg(job.labels.flat_owner())
    bad = _arg(state.bad)
    has_w = job.weights is not None
    weights = _arg(job.weights.flat_owner()) if has_w else _scratch(1, np.float64, dev, True)
    if weighted:
        sums = _arg(_flat(state.sums))
        scr = _scratch(2 * cells, np.uint64, dev, True)  # zeroed per call
        counts = _scratch(1, np.int64, dev, False)
    else:
        counts = _arg(_flat(state.counts))
        scr = _scratch(2, np.uint64, dev, False)
    use_smem = (not weighted) and cells <= SMEM_MAX_CELLS
    shmem = cells * 4 if use_smem else 0

    lcode = int(job.labels.dtype)
    label_bool = lcode == _dtypes.BOOL
    label_float = lcode in (_dtypes.FLOAT32, _dtypes.FLOAT64)
    label_index = int(job.label_mode) == LABEL_INDEX
    pcode = int(job.pred.dtype)
    half = pcode in (_dtypes.FLOAT16, _dtypes.BFLOAT16) and T - 1 <= 2048
    tm1f, tm1d = np.float32(T - 1), np.float64(T - 1)
    wscalar = np.float64(job.weight_scalar)
    elements, rows = _KERNELS(pcode)
    prob_mode = int(job.prob_mode)

    if prob_mode == SOFTMAX:
        nchunks = -(-N // CHUNK)
        g = _blocks(nchunks, C)
        rows[g, TPB, stream, shmem](pred, labels, weights, wscalar, has_w, weighted, N, nchunks, C, T, tm1d,
                                    label_index, label_bool, label_float, use_smem, counts, scr, bad)
    else:
        nitems = N * C
        nchunks = -(-nitems // CHUNK)
        g = _blocks(nchunks, 1)
        elements[g, TPB, stream, shmem](pred, labels, weights, wscalar, has_w, weighted, nitems, nchunks, C, T,
                                        tm1f, tm1d, half, label_index, label_bool, label_float,
                                        prob_mode == SIGMOID, use_smem, counts, scr, bad)
    if weighted:
        g = max(1, min(MAX_BLOCKS, -(-cells // (TPB * CONVERT_CELLS))))
        _convert[g, TPB, stream](scr, sums, cells)
