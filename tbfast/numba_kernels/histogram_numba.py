"""Numba CPU fallback for the histogram op (used when tbfast._C is not built).

Same semantics as csrc/histogram.h, written independently: a plain binary search over
the edges instead of the lookup table. Work is split into fixed 64 Ki-element chunks;
statistics are reduced in chunk order, so sums do not depend on the thread count.
Float16 and bfloat16 arrive as raw uint16 bits and are converted through a 65536-entry
table built by NumPy.
"""

import math

import numba
import numpy as np

from .. import _dtypes

CHUNK = 1 << 16
PLAIN, HALF_BITS, BF16_BITS = 0, 1, 2


def prepare(arr, code):
    """(array, kind) for the kernels: 16-bit floats become their uint16 bit patterns."""
    if code == _dtypes.FLOAT16:
        return arr.view(np.uint16), HALF_BITS
    if code == _dtypes.BFLOAT16:
        return arr.view(np.uint16), BF16_BITS
    return arr, PLAIN


def _lut16(kind):
    """float64 value of every 16-bit pattern (float16 or bfloat16), via NumPy."""
    bits = np.arange(1 << 16, dtype=np.uint32)
    with np.errstate(invalid="ignore"):  # NaN patterns convert to NaN, as they should
        if kind == HALF_BITS:
            return bits.astype(np.uint16).view(np.float16).astype(np.float64)
        return (bits << 16).view(np.float32).astype(np.float64)


_LUTS = {}


def lut(kind):
    if kind not in _LUTS:
        _LUTS[kind] = _lut16(kind) if kind != PLAIN else np.zeros(1)
    return _LUTS[kind]


@numba.njit(cache=True, inline="always")
def _load(arr, i, kind, lut):
    if kind != PLAIN:
        return lut[np.int64(arr[i])]
    return np.float64(arr[i])


def account(v, mn, mx, s, q, nan, pinf, ninf):
    """One value into running stats (finite ones only; non-finite counted). Plain Python,
    compiled here for the CPU and by histogram_numba_cuda as a CUDA device function."""
    if math.isfinite(v):
        mn = min(mn, v)
        mx = max(mx, v)
        s += v
        q += v * v
    elif v != v:
        nan += 1
    elif v > 0:
        pinf += 1
    else:
        ninf += 1
    return mn, mx, s, q, nan, pinf, ninf


_account = numba.njit(cache=True, inline="always")(account)


@numba.njit(cache=True, parallel=True)
def _chunk_stats(arr, kind, lut, out):
    n = arr.size
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in numba.prange(nchunks):
        mn, mx, s, q = math.inf, -math.inf, 0.0, 0.0
        nan = pinf = ninf = 0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            mn, mx, s, q, nan, pinf, ninf = _account(_load(arr, i, kind, lut), mn, mx, s, q, nan, pinf, ninf)
        out[c, 0], out[c, 1], out[c, 2], out[c, 3] = mn, mx, s, q
        out[c, 4], out[c, 5], out[c, 6] = nan, pinf, ninf


def stats(arr, kind, stats_out, nonfinite_out):
    """Fill stats_out [min, max, sum, sumsq] (finite values) and nonfinite_out [nan, +inf, -inf]."""
    nchunks = (arr.size + CHUNK - 1) // CHUNK
    part = np.zeros((nchunks, 7), dtype=np.float64)
    _chunk_stats(arr, kind, lut(kind), part)
    stats_out[0] = part[:, 0].min() if nchunks else math.inf
    stats_out[1] = part[:, 1].max() if nchunks else -math.inf
    s = q = 0.0
    for c in range(nchunks):  # chunk order: deterministic
        s += part[c, 2]
        q += part[c, 3]
    stats_out[2], stats_out[3] = s, q
    nonfinite_out[:] = part[:, 4:7].sum(axis=0).astype(np.int64)


@numba.njit(cache=True, parallel=True)
def _count_edges(arr, kind, lut, edges, groups):
    n = arr.size
    ne = edges.size
    g_count = groups.shape[0]
    for g in numba.prange(g_count):
        for i in range(g * n // g_count, (g + 1) * n // g_count):
            v = _load(arr, i, kind, lut)
            if not math.isfinite(v) or v < edges[0] or v > edges[ne - 1]:
                continue
            lo, hi = 0, ne
            while lo < hi:  # upper_bound
                mid = (lo + hi) >> 1
                if edges[mid] <= v:
                    lo = mid + 1
                else:
                    hi = mid
            b = lo - 1
            if b == ne - 1:  # v == last edge: last bin is closed
                b -= 1
            groups[g, b] += 1


@numba.njit(cache=True, parallel=True)
def _count_uniform(arr, kind, lut, first, last, groups):
    n = arr.size
    nb = groups.shape[1]
    denom = last - first
    step = denom / nb
    g_count = groups.shape[0]
    for g in numba.prange(g_count):
        for i in range(g * n // g_count, (g + 1) * n // g_count):
            v = _load(arr, i, kind, lut)
            if not (v >= first and v <= last):  # also drops NaN; inf is outside
                continue
            f = ((v - first) / denom) * nb
            idx = np.int64(f) if f >= 0.0 and f <= nb else 0  # NaN-safe, as in the kernel
            if idx == nb:
                idx -= 1
            lo = last if idx == nb else (((idx / nb) * denom + first) if step == 0.0 else idx * step + first)
            if v < lo:
                idx -= 1
            if idx != nb - 1:
                j = idx + 1
                hi = last if j == nb else (((j / nb) * denom + first) if step == 0.0 else j * step + first)
                if v >= hi:
                    idx += 1
            groups[g, max(idx, 0)] += 1


def _groups(num_bins):
    return np.zeros((max(1, numba.get_num_threads()), num_bins), dtype=np.int64)


def count_edges(arr, kind, edges, counts_out):
    """Add the bucket counts of arr's finite values among ``edges`` to counts_out."""
    groups = _groups(counts_out.size)
    _count_edges(arr, kind, lut(kind), np.ascontiguousarray(edges, dtype=np.float64), groups)
    counts_out += groups.sum(axis=0)


def count_uniform(arr, kind, first, last, counts_out):
    """Add the counts of ``counts_out.size`` equal bins over [first, last] (numpy-exact)."""
    groups = _groups(counts_out.size)
    _count_uniform(arr, kind, lut(kind), first, last, groups)
    counts_out += groups.sum(axis=0)
