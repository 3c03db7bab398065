"""Protobuf wire encoding for the few messages on the hot path (an Event holding a
Summary holding a HistogramProto): packed doubles come straight from NumPy's bytes
instead of element-by-element proto assignment. Output parses to the same message as the
generated classes would serialise (tests/test_wire.py checks both directions).
"""

import math
import struct
import time

import numpy as np

_DOUBLE = struct.Struct("<d")
_STATS = struct.Struct("<BdBdBdBdBd")  # fields 1-5 of HistogramProto, all present
_SMALL = 1 << 14


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_VARINTS = [_varint(n) for n in range(_SMALL)]


def varint(n):
    """Base-128 varint of a non-negative int (cached below 2^14)."""
    return _VARINTS[n] if n < _SMALL else _varint(n)


def length_delimited(field, payload):
    return varint((field << 3) | 2) + varint(len(payload)) + payload


def double(field, value):
    """A double field; proto3 omits +0.0 (the default), so do we."""
    value = float(value)
    if value == 0.0 and math.copysign(1.0, value) > 0:
        return b""
    return varint((field << 3) | 1) + _DOUBLE.pack(value)


def packed_doubles(field, values):
    """A packed repeated double field from any array-like (omitted when empty)."""
    arr = np.ascontiguousarray(values, dtype="<f8")
    if arr.size == 0:
        return b""
    return length_delimited(field, arr.tobytes())


def histogram_proto(min, max, num, sum, sum_squares, bucket_limit, bucket):
    """Serialised HistogramProto (fields 1-7)."""
    stats = (float(min), float(max), float(num), float(sum), float(sum_squares))
    if all(v != 0.0 for v in stats):  # the usual case: one pack call
        head = _STATS.pack(0x09, stats[0], 0x11, stats[1], 0x19, stats[2], 0x21, stats[3], 0x29, stats[4])
    else:
        head = b"".join(double(f, v) for f, v in zip((1, 2, 3, 4, 5), stats))
    return head + packed_doubles(6, bucket_limit) + packed_doubles(7, bucket)


def tag_bytes(tag, name="tag"):
    """UTF-8 bytes of a summary tag. TypeError naming ``name`` for anything but a str
    (bytes included: TensorBoard tags are text)."""
    if type(tag) is not str and not isinstance(tag, str):
        raise TypeError(f"{name} must be a str, got {type(tag).__name__} {tag!r:.80}")
    return tag.encode("utf-8")


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def check_walltime(walltime, name="walltime"):
    """``walltime`` (seconds since the epoch) as a finite float; None is now
    (``time.time()``). TypeError naming ``name`` for anything that is not a real number
    (strings included), ValueError for NaN and +-inf: TensorBoard rejects a NaN
    Event.wall_time, and an infinite one sorts the event outside every run."""
    if walltime is None:
        return time.time()
    if type(walltime) is not float:
        if isinstance(walltime, (str, bytes, bytearray)):
            raise TypeError(f"{name} must be a number (seconds since the epoch), got {type(walltime).__name__} "
                            f"{walltime!r:.80}")
        try:
            walltime = float(walltime)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number (seconds since the epoch), got {type(walltime).__name__} "
                            f"{walltime!r:.80}") from None
    if not math.isfinite(walltime):
        raise ValueError(f"{name}={walltime} is not finite; Event.wall_time must be a finite number of seconds")
    return walltime


def check_step(step, name="global_step"):
    """``step`` as an int in int64's range (Event.step is an int64). None stays None.
    TypeError for non-integers (floats with a fraction included), ValueError outside
    [-2**63, 2**63 - 1]: never written wrapped around."""
    if step is None:
        return None
    if type(step) is not int:
        try:  # NumPy integers, 0-d integer tensors, integral floats
            as_int = int(step)
            exact = bool(as_int == step)
        except Exception:
            exact = False
        if not exact:
            raise TypeError(f"{name} must be an integer, got {type(step).__name__} {step!r:.80}")
        step = as_int
    if not INT64_MIN <= step <= INT64_MAX:
        raise ValueError(f"{name}={step} is outside int64 [-2**63, 2**63 - 1], the range of Event.step")
    return step


def int64_varint(n, name="global_step"):
    """Varint of an int64 (two's complement for negatives, 10 bytes), range-checked."""
    n = check_step(n, name)
    return varint(n & 0xFFFFFFFFFFFFFFFF)


def summary_value(tag, field, payload):
    """Serialised Summary holding one Value: tag plus one length-delimited value field
    (5 = histo, 8 = tensor, 4 = image...)."""
    value = length_delimited(1, tag_bytes(tag)) + length_delimited(field, payload)
    return length_delimited(1, value)


def simple_values(tags_values):
    """Serialised Summary of simple_value scalars [(tag, float)]."""
    out = []
    for tag, v in tags_values:
        value = length_delimited(1, tag_bytes(tag)) + varint((2 << 3) | 5) + struct.pack("<f", v)
        out.append(length_delimited(1, value))
    return b"".join(out)


def event(summary, wall_time, step=None):
    """Serialised Event(wall_time, step, summary=<serialised Summary>). ``step``: an int
    in int64's range or None (TypeError / ValueError otherwise, see check_step)."""
    out = double(1, wall_time)
    step = check_step(step)
    if step:
        out += varint(2 << 3) + varint(step & 0xFFFFFFFFFFFFFFFF)
    return out + length_delimited(5, summary)
