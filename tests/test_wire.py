"""The hand-written wire encoder parses to the same messages the generated classes build."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbfast import _wire
from tbfast.proto import Event, HistogramProto, Summary

doubles = st.floats(allow_nan=False, width=64)


@settings(max_examples=200, deadline=None)
@given(doubles, doubles, doubles, doubles, doubles, st.lists(doubles, max_size=40), st.integers(0, 2 ** 40))
def test_histogram_summary_event_roundtrip(mn, mx, num, s, sq, limits, count_seed):
    counts = np.random.default_rng(count_seed).integers(0, 10 ** 9, len(limits)).astype(np.float64)
    expect = HistogramProto(min=mn, max=mx, num=num, sum=s, sum_squares=sq, bucket_limit=limits,
                            bucket=counts.tolist())
    got = HistogramProto.FromString(_wire.histogram_proto(mn, mx, num, s, sq, np.array(limits), counts))
    assert got == expect
    assert _wire.histogram_proto(mn, mx, num, s, sq, np.array(limits), counts) == expect.SerializeToString()
    summary = _wire.summary_value("tag/ü", 5, expect.SerializeToString())
    assert Summary.FromString(summary) == Summary(value=[Summary.Value(tag="tag/ü", histo=expect)])


@pytest.mark.parametrize("step", [None, 0, 1, 127, 128, 2 ** 40, -1, -(2 ** 62)])
@pytest.mark.parametrize("wall", [1700000000.25, 0.0, -0.0])
def test_event_encoding_equals_generated(step, wall):
    summary = Summary(value=[Summary.Value(tag="x", simple_value=1.5)])
    expect = Event(wall_time=wall, summary=summary)
    if step is not None:
        expect.step = step
    data = _wire.event(summary.SerializeToString(), wall, step)
    assert Event.FromString(data) == expect
    assert data == expect.SerializeToString()


def test_simple_values_and_signed_zero():
    got = Summary.FromString(_wire.simple_values([("a", 0.0), ("b", -2.5), ("c", math.inf)]))
    assert [(v.tag, v.simple_value) for v in got.value] == [("a", 0.0), ("b", -2.5), ("c", math.inf)]
    neg = HistogramProto.FromString(_wire.histogram_proto(-0.0, 0.0, 0.0, 0.0, 0.0, [], []))
    assert math.copysign(1.0, neg.min) == -1.0
    assert _wire.varint(300) == b"\xac\x02"
