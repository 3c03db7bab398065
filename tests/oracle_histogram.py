"""Naive, obviously-correct histogram reference, independent of tbfast's code: np.histogram
semantics spelled out with Python's bisect over plain floats."""

import bisect
import math


def tensorflow_edges():
    v, pos = 1e-12, []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    return [-x for x in reversed(pos)] + [0.0] + pos


def counts_edges(values, edges):
    """Counts per bin [e_i, e_{i+1}), last bin closed; non-finite and outside dropped."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        v = float(v)
        if not math.isfinite(v) or v < edges[0] or v > edges[-1]:
            continue
        i = bisect.bisect_right(edges, v) - 1
        counts[min(i, len(counts) - 1)] += 1
    return counts


def _fsum(xs):
    try:
        return math.fsum(xs)
    except OverflowError:  # the exact sum overflows double: it is +-inf
        return sum(xs)


def stats(values):
    fin = [float(v) for v in values if math.isfinite(float(v))]
    nan = sum(1 for v in values if math.isnan(float(v)))
    pinf = sum(1 for v in values if float(v) == math.inf)
    ninf = sum(1 for v in values if float(v) == -math.inf)
    return {
        "min": min(fin) if fin else None,
        "max": max(fin) if fin else None,
        "sum": _fsum(fin),
        "sum_squares": _fsum([v * v for v in fin]),
        "num": len(fin),
        "nonfinite": (nan, pinf, ninf),
    }
