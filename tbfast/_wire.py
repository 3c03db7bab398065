"""Protobuf wire encoding for the few messages on the hot path (an Event holding a
Summary holding a HistogramProto): packed doubles come straight from NumPy's bytes
instead of element-by-element proto assignment. Output parses to the same message as the
generated classes would serialise (tests/test_wire.py checks both directions).
"""

import math
import struct

import numpy as np

_DOUBLE = struct.Struct("<d")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


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
    return b"".join((double(1, min), double(2, max), double(3, num), double(4, sum), double(5, sum_squares),
                     packed_doubles(6, bucket_limit), packed_doubles(7, bucket)))


def summary_value(tag, field, payload):
    """Serialised Summary holding one Value: tag plus one length-delimited value field
    (5 = histo, 8 = tensor, 4 = image...)."""
    value = length_delimited(1, tag.encode("utf-8")) + length_delimited(field, payload)
    return length_delimited(1, value)


def simple_values(tags_values):
    """Serialised Summary of simple_value scalars [(tag, float)]."""
    out = []
    for tag, v in tags_values:
        value = length_delimited(1, tag.encode("utf-8")) + varint((2 << 3) | 5) + struct.pack("<f", v)
        out.append(length_delimited(1, value))
    return b"".join(out)


def event(summary, wall_time, step=None):
    """Serialised Event(wall_time, step, summary=<serialised Summary>)."""
    out = double(1, wall_time)
    if step:
        out += varint(2 << 3) + varint(int(step) & 0xFFFFFFFFFFFFFFFF)
    return out + length_delimited(5, summary)
