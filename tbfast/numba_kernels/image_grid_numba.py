"""Numba CPU kernels for tbfast.image (the fallback when tbfast._C is not built).

Same semantics as csrc/image_grid.h. Input is an N x C x H x W array of any strides,
already widened to float32 for 16-bit floats. Work split: canvas rows across threads
(prange); each row writes only itself.
"""

import numba
import numpy as np

_F255 = np.float32(255.0)


@numba.njit(inline="always")
def _clip_truncate(y):
    if not y > 0:  # negatives, zero and NaN
        return np.uint8(0)
    if y >= 255:
        return np.uint8(255)
    return np.uint8(np.int32(y))


@numba.njit(inline="always")
def _convert(v, norm, lo, hi, lo32, hi32, d, d32, is_f64, is_u8):
    if norm == 0:
        if is_u8:
            return np.uint8(v)
        return _clip_truncate(np.float32(v) * _F255)
    if is_f64:
        c = np.float64(v)
        c = lo if c < lo else c
        c = hi if c > hi else c
        return _clip_truncate(np.float32((c - lo) / d) * _F255)
    c32 = np.float32(v)
    c32 = lo32 if c32 < lo32 else c32
    c32 = hi32 if c32 > hi32 else c32
    return _clip_truncate(((c32 - lo32) / d32) * _F255)


@numba.njit(parallel=True, cache=True)
def image_grid(x, is_f64, is_u8, norm, lo, hi, cols, padding, pad_byte, out):
    """Fill ``out`` (H_out, W_out, C_out) from ``x`` (N, C, H, W). norm 0: plain; else
    per-image ranges lo[k], hi[k] (float64). is_f64 / is_u8 describe x's dtype."""
    n, c, h, w = x.shape
    out_h, out_w, out_c = out.shape
    for r in numba.prange(out_h):
        for j in range(out_w):
            for ch in range(out_c):
                out[r, j, ch] = pad_byte
        rr = r - padding
        if rr < 0:
            continue
        band = rr // (h + padding)
        iy = rr - band * (h + padding)
        if iy >= h:
            continue
        for gx in range(cols):
            k = band * cols + gx
            if k >= n:
                break
            d = max(hi[k] - lo[k], 1e-5)
            lo32, hi32, d32 = np.float32(lo[k]), np.float32(hi[k]), np.float32(d)
            left = gx * (w + padding) + padding
            for ix in range(w):
                for ch in range(out_c):
                    src = ch if c > 1 else 0
                    out[r, left + ix, ch] = _convert(x[k, src, iy, ix], norm, lo[k], hi[k], lo32, hi32, d, d32,
                                                     is_f64, is_u8)
    return out


@numba.njit(parallel=True, cache=True)
def image_ranges(x, is_f64):
    """(N, 2) float64 finite min/max per image, (inf, -inf) when none is finite; in the
    compute type (float64 for float64 input, float32 otherwise)."""
    n, c, h, w = x.shape
    res = np.empty((n, 2), np.float64)
    for k in numba.prange(n):
        mn = np.inf
        mx = -np.inf
        for ch in range(c):
            for iy in range(h):
                for ix in range(w):
                    if is_f64:
                        v = np.float64(x[k, ch, iy, ix])
                    else:
                        v = np.float64(np.float32(x[k, ch, iy, ix]))
                    if v - v == 0:
                        mn = min(mn, v)
                        mx = max(mx, v)
        res[k, 0] = mn
        res[k, 1] = mx
    return res
