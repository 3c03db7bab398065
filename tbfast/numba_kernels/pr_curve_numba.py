"""Numba CPU fallback for the PR-curve op (same semantics as csrc/pr_curve.h).

The wrapper in tbfast/pr_curve.py hands over predictions as float32 or float64 values
(16-bit floats are widened exactly), labels and weights as float64; ``half`` asks for the
float16 rounding of the float32 product that torch's NumPy path does for 16-bit inputs.
Unweighted counts are integers, split over threads by ``prange`` into private rows and
summed; weighted sums run block by block in row order, like np.histogram.
"""

import math

import numpy as np
from numba import njit, prange

# Must match csrc/pr_curve.h.
BLOCK_ROWS = 1 << 16
BAD_NAN, BAD_RANGE, BAD_LOGIT, BAD_LABEL, BAD_INDEX, BAD_WEIGHT = 0, 1, 2, 3, 4, 5
PROBS, SOFTMAX, SIGMOID = 0, 1, 2


@njit(cache=True)
def _round_half(x):
    # x: float32 product >= 2^-14, rounded to 11 significant bits, ties to even (exact in
    # float64: x has at most 24 significant bits).
    m, e = math.frexp(np.float64(x))
    q = math.ldexp(m, 11)
    f = math.floor(q)
    d = q - f
    if d > 0.5 or (d == 0.5 and int(f) % 2 == 1):
        f += 1.0
    return math.ldexp(f, e - 11)


@njit(cache=True)
def _bucket(v, tm1, half):
    # v: probability in [0, 1] of the prediction's dtype (float32 or float64).
    x = v * tm1  # tm1 has v's dtype, so the product rounds in v's precision
    if half:
        if x < 6.103515625e-05:
            return 0
        return int(_round_half(x))
    return int(x)


@njit(cache=True)
def _rows(pred, tm1, half, labels, label_index, weights, has_w, wscalar, weighted,
          C, T, prob_mode, r0, r1, counts, sums, bad, row):
    """Rows [r0, r1) into counts (int64 [C*T*2]) or sums (float64 [C*T*2])."""
    for r in range(r0, r1):
        w = 1.0
        if weighted:
            w = weights[r] if has_w else wscalar
            if not (w >= 0.0 and w <= 1.7976931348623157e308):
                bad[BAD_WEIGHT] += 1
                continue
        idx = -1
        if label_index:
            lv = labels[r]
            if not (lv >= 0.0 and lv < C) or lv != math.floor(lv):
                bad[BAD_INDEX] += 1
                continue
            idx = int(lv)
        total = 0.0
        if prob_mode == SOFTMAX:
            mx = -np.inf
            nonfinite = 0
            for c in range(C):
                v = np.float64(pred[r * C + c])
                if not np.isfinite(v):
                    nonfinite += 1
                elif v > mx:
                    mx = v
            if nonfinite:
                bad[BAD_LOGIT] += nonfinite
                continue
            for c in range(C):
                e = math.exp(np.float64(pred[r * C + c]) - mx)
                row[c] = e
                total += e
        for c in range(C):
            if idx >= 0:
                pos = 1 if c == idx else 0
            else:
                lv = labels[r * C + c]
                if lv == 0.0:
                    pos = 0
                elif lv == 1.0:
                    pos = 1
                else:
                    bad[BAD_LABEL] += 1
                    continue
            if prob_mode == PROBS:
                v = pred[r * C + c]
                if not (v >= 0.0 and v <= 1.0):
                    if v != v:
                        bad[BAD_NAN] += 1
                    else:
                        bad[BAD_RANGE] += 1
                    continue
                b = _bucket(v, tm1, half)
            elif prob_mode == SOFTMAX:
                b = int((row[c] / total) * np.float64(T - 1))
            else:
                v = np.float64(pred[r * C + c])
                if not np.isfinite(v):
                    bad[BAD_LOGIT] += 1
                    continue
                b = int((1.0 / (1.0 + math.exp(-v))) * np.float64(T - 1))
            j = (c * T + b) * 2 + pos
            if weighted:
                sums[j] += w
            else:
                counts[j] += 1


@njit(cache=True, parallel=True)
def count_unweighted(pred, tm1, half, labels, label_index, C, T, prob_mode, num_rows, nseg, counts, bad):
    """Adds integer counts into counts [C*T*2] and bad [8]; nseg private segments."""
    cells = C * T * 2
    part = np.zeros((nseg, cells), np.int64)
    pbad = np.zeros((nseg, bad.shape[0]), np.int64)
    step = (num_rows + nseg - 1) // nseg
    dummy_w = np.zeros(0, np.float64)
    dummy_s = np.zeros(0, np.float64)
    for s in prange(nseg):
        row = np.zeros(C, np.float64)
        r0 = min(s * step, num_rows)
        r1 = min(r0 + step, num_rows)
        _rows(pred, tm1, half, labels, label_index, dummy_w, False, 1.0, False,
              C, T, prob_mode, r0, r1, part[s], dummy_s, pbad[s], row)
    for s in range(nseg):
        counts += part[s]
        bad += pbad[s]


@njit(cache=True)
def sum_weighted(pred, tm1, half, labels, label_index, weights, has_w, wscalar, C, T, prob_mode,
                 num_rows, sums, bad):
    """Adds float64 sums into sums [C*T*2] block by block in row order (np.histogram's
    order of additions)."""
    scratch = np.zeros(C * T * 2, np.float64)
    dummy_c = np.zeros(0, np.int64)
    row = np.zeros(C, np.float64)
    for r0 in range(0, num_rows, BLOCK_ROWS):
        r1 = min(r0 + BLOCK_ROWS, num_rows)
        scratch[:] = 0.0
        _rows(pred, tm1, half, labels, label_index, weights, has_w, wscalar, True,
              C, T, prob_mode, r0, r1, dummy_c, scratch, bad, row)
        for j in range(scratch.shape[0]):
            sums[j] += scratch[j]
