"""The histogram op on every backend, dtype, bins mode, layout and odd shape, against
np.histogram on float64 (what torch runs) and a naive bisect oracle."""

import importlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbfast
from tbfast import _tensor, backends
H = importlib.import_module("tbfast.histogram")  # the module; tbfast.histogram is the function

from conftest import on, outputs_per_simd_level, require_backend
from oracle_histogram import counts_edges, stats, tensorflow_edges

TORCH_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                torch.bfloat16, torch.float32, torch.float64, torch.uint16, torch.uint32, torch.uint64]


def as_float64(t):
    """Exactly the values a tensor holds, as float64 NumPy (torch's path, minus its
    lossy bf16->fp16 cast)."""
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return t.numpy().astype(np.float64)
    return t.double().numpy()


def sample(dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == torch.bool:
        return torch.from_numpy(rng.integers(0, 2, n).astype(bool))
    if dtype.is_floating_point:
        x = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 50.0], n)
        return torch.from_numpy(x).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return torch.from_numpy(rng.integers(lo, hi, n, endpoint=True)).to(dtype)


def check_stats(r, x64):
    fin = x64[np.isfinite(x64)]
    assert r.num == fin.size
    if fin.size:
        assert r.min == fin.min() and r.max == fin.max()
    # float sums: a same-precision bound, n * eps * sum|terms| (exact when overflowing)
    with np.errstate(over="ignore"):
        for got, ref, mag in ((r.sum, fin.sum(), np.abs(fin).sum()),
                              (r.sum_squares, fin.dot(fin), np.square(fin).sum())):
            if not np.isfinite(ref):
                assert got == ref
            else:
                assert abs(got - ref) <= 2.3e-16 * max(1, fin.size) * (mag + 1)
    assert (r.nan_count, r.posinf_count, r.neginf_count) == (
        int(np.isnan(x64).sum()), int((x64 == np.inf).sum()), int((x64 == -np.inf).sum()))


def expected(x64, bins):
    fin = x64[np.isfinite(x64)]
    if bins == "tensorflow":
        bins = H.default_edges()
    return np.histogram(fin, bins=bins)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("bins", ["tensorflow", 17, [-3.0, -1.0, 0.0, 0.0, 2.5, 100.0], "sturges"],
                         ids=["tf", "int", "edges", "estimator"])
def test_every_dtype_and_bins_mode(backend, device, dtype, bins):
    require_backend("histogram", backend, device)
    t = sample(dtype, 3001)
    r = tbfast.histogram(on(device, t), bins=bins, backend=backend)
    x64 = as_float64(t)
    counts, limits = expected(x64, bins)
    got_c, got_l = r.numpy()
    np.testing.assert_array_equal(got_c, counts)
    np.testing.assert_array_equal(got_l, limits)
    assert got_c.dtype == np.int64 and got_l.dtype == np.float64
    check_stats(r, x64)
    assert r.backend == backend


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 65535, 65536, 65537, 200003])
def test_odd_sizes_and_chunk_boundaries(backend, device, n):
    require_backend("histogram", backend, device)
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    for bins in ("tensorflow", 10):
        r = tbfast.histogram(on(device, x), bins=bins, backend=backend)
        counts, limits = expected(x.astype(np.float64), bins)
        np.testing.assert_array_equal(r.numpy()[0], counts)
        np.testing.assert_array_equal(r.numpy()[1], limits)
        check_stats(r, x.astype(np.float64))


def test_values_on_edges_signed_zero_subnormals_and_beyond(backend, device):
    require_backend("histogram", backend, device)
    edges = np.array(tensorflow_edges())
    special = [0.0, -0.0, 5e-324, -5e-324, 2.2e-308, 1e-12, -1e-12, 1e-13, -1e-13, edges[-1], edges[0],
               np.nextafter(edges[-1], np.inf), np.nextafter(edges[0], -np.inf), 1e20, -1e20, 1e300, -1e300]
    x = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf), special])
    r = tbfast.histogram(on(device, x), backend=backend)
    np.testing.assert_array_equal(r.numpy()[0], counts_edges(x, edges.tolist()))
    check_stats(r, x)
    assert r.num == x.size  # beyond the outer edges: in num and the stats, in no bucket
    assert r.numpy()[0].sum() == x.size - 8  # 6 specials + nextafter of both outer edges


def test_float32_values_on_edges(backend, device):
    require_backend("histogram", backend, device)
    # float32 neighbours of each default edge: the double comparison must be exact.
    e = H.default_edges()
    x = np.concatenate([e.astype(np.float32), np.nextafter(e.astype(np.float32), np.float32(np.inf))])
    x = x[np.isfinite(x)]
    r = tbfast.histogram(on(device, x), backend=backend)
    np.testing.assert_array_equal(r.numpy()[0], np.histogram(x.astype(np.float64), bins=e)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_nonfinite_counted_never_fatal(backend, device, dtype):
    require_backend("histogram", backend, device)
    t = torch.tensor([1.0, float("nan"), 2.0, float("inf"), -float("inf"), float("nan"), -3.0], dtype=dtype)
    r = tbfast.histogram(on(device, t), backend=backend)
    assert (r.nan_count, r.posinf_count, r.neginf_count) == (2, 1, 1)
    assert (r.min, r.max, r.sum, r.sum_squares, r.num) == (-3.0, 2.0, 0.0, 14.0, 3)
    assert r.numpy()[0].sum() == 3
    r = tbfast.histogram(on(device, t), bins=4, backend=backend)  # np.histogram would raise here
    np.testing.assert_array_equal(r.numpy()[0], [1, 0, 0, 2])


def test_no_finite_value(backend, device):
    require_backend("histogram", backend, device)
    r = tbfast.histogram(on(device, np.array([np.nan, np.inf])), backend=backend)
    assert r.num == 0 and r.numpy()[0].sum() == 0 and (r.min, r.max) == (0.0, 0.0)
    r = tbfast.histogram(on(device, np.array([np.nan])), bins=3, backend=backend)
    assert r.numpy()[0].tolist() == [0, 0, 0]


def test_single_value_int_bins_widen_like_numpy(backend, device):
    require_backend("histogram", backend, device)
    r = tbfast.histogram(on(device, np.full(10, 7.0)), bins=4, backend=backend)
    c, l = np.histogram(np.full(10, 7.0), bins=4)
    np.testing.assert_array_equal(r.numpy()[0], c)
    np.testing.assert_array_equal(r.numpy()[1], l)


@pytest.mark.parametrize("max_bins", [1, 3, 7, 100, 1547, 1548, 5000])
def test_max_bins_merges_like_torch(backend, device, max_bins):
    require_backend("histogram", backend, device)
    from torch.utils.tensorboard.summary import make_histogram

    x = np.random.default_rng(1).standard_normal(5000) * 10
    r = tbfast.histogram(on(device, x), max_bins=max_bins, backend=backend)
    counts, limits = np.histogram(x, bins=H.default_edges())
    ref_c, ref_l = H.merge_max_bins(counts, limits, max_bins)
    np.testing.assert_array_equal(r.numpy()[0], ref_c)
    np.testing.assert_array_equal(r.numpy()[1], ref_l)
    # and the trimmed proto equals torch's make_histogram
    from tbfast.histogram_logging import histogram_result_proto

    ours = histogram_result_proto(r)
    theirs = make_histogram(x, H.default_edges(), max_bins)
    assert list(ours.bucket) == list(theirs.bucket)
    assert list(ours.bucket_limit) == list(theirs.bucket_limit)


def test_max_bins_worked_example():
    # spec 1.3: 10 bins with max_bins=3 -> 4 bins (padded), last limit the true last edge
    c, l = H.merge_max_bins(np.arange(10), np.arange(11.0), 3)
    assert c.tolist() == [3, 12, 21, 9] and l.tolist() == [0.0, 3.0, 6.0, 9.0, 10.0]
    ct, lt = H.merge_max_bins(torch.arange(10), torch.arange(11.0), 3)
    assert ct.tolist() == c.tolist() and lt.tolist() == l.tolist()


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "channels_last", "sliced", "expanded", "scalar"])
def test_layouts(backend, device, layout):
    require_backend("histogram", backend, device)
    base = torch.randn(4, 6, 5, 7)
    t = {
        "contiguous": base,
        "transposed": base.transpose(1, 3),
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "sliced": base[:, ::2, 1:, ::3],
        "expanded": torch.randn(5, 1).expand(5, 9),
        "scalar": torch.tensor(3.5),
    }[layout]
    r = tbfast.histogram(on(device, t), bins=9, backend=backend)
    c, l = np.histogram(t.double().numpy(), bins=9)
    np.testing.assert_array_equal(r.numpy()[0], c)
    np.testing.assert_array_equal(r.numpy()[1], l)


def test_dense_inputs_are_not_copied():
    t = torch.randn(8, 9)
    assert _tensor.describe(t).ptr == t.data_ptr()
    tt = t.t()
    f = _tensor.describe(tt)
    assert f.ptr == t.data_ptr() and f.numel == 72  # permuted but dense: read in place
    a = np.arange(24.0).reshape(4, 6)[:, ::-1]  # negative strides, dense
    assert _tensor.describe(a).numel == 24
    assert _tensor.describe(t[:, ::2]).ptr != t.data_ptr()  # gappy views are compacted


def test_numpy_negative_strides_and_python_inputs(backend, device):
    require_backend("histogram", backend, device)
    a = np.random.default_rng(2).standard_normal((30, 40))[::-1, ::-2]
    r = tbfast.histogram(on(device, a), bins=5, backend=backend)
    np.testing.assert_array_equal(r.numpy()[0], np.histogram(a, bins=5)[0])
    assert tbfast.histogram([1, 2, 3], backend=backend).num == 3
    assert tbfast.histogram(on(device, 2.5), backend=backend).num == 1


def test_result_stays_torch_for_torch_input():
    r = tbfast.histogram(torch.randn(100))
    assert isinstance(r.counts, torch.Tensor) and isinstance(r.limits, torch.Tensor)
    assert r.counts.dtype == torch.int64 and r.limits.dtype == torch.float64
    r = tbfast.histogram(np.arange(10.0))
    assert isinstance(r.counts, np.ndarray)


def test_more_than_2_pow_24_in_one_bucket():
    n = (1 << 24) + 7
    r = tbfast.histogram(torch.zeros(n, dtype=torch.uint8), bins=2)
    assert r.numpy()[0].tolist() == [0, n]
    r = tbfast.histogram(torch.ones(n, dtype=torch.float32))
    assert r.numpy()[0].max() == n and r.sum == n and r.sum_squares == n


def test_many_tensors_one_native_call(monkeypatch):
    require_backend("histogram", "native")
    from tbfast import _native

    mod, _ = _native.cpu()
    calls = []
    real = mod.histogram
    monkeypatch.setattr(mod, "histogram", lambda **kw: (calls.append(kw["num_tensors"]), real(**kw))[1])
    rng = np.random.default_rng(3)
    named = {f"p{i}": torch.from_numpy(rng.standard_normal(int(rng.integers(1, 3000)))).to(
        [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32][i % 5]) for i in range(300)}
    results = tbfast.histograms(named)
    assert calls == [300]  # one call for all 300 tensors
    assert list(results) == list(named)
    for name, t in named.items():
        single = tbfast.histogram(t)
        np.testing.assert_array_equal(results[name].numpy()[0], single.numpy()[0])
        assert results[name].sum == single.sum and results[name].num == t.numel()


def test_histograms_matches_per_tensor_every_backend(backend, device):
    require_backend("histogram", backend, device)
    named = [("a", torch.randn(1000)), ("b", torch.arange(7)), ("c", torch.randn(3, 5).half())]
    for bins in ("tensorflow", 6):
        res = tbfast.histograms([(n, on(device, t)) for n, t in named], bins=bins, backend=backend)
        for name, t in named:
            c, l = expected(as_float64(t), bins)
            np.testing.assert_array_equal(res[name].numpy()[0], c)
            np.testing.assert_array_equal(res[name].numpy()[1], l)


def test_degenerate_uniform_range_is_a_clear_error(backend, device):
    require_backend("histogram", backend, device)
    # 2^52 + 2 widened by 0.5 rounds back to itself: numpy raises, so do we (no crash)
    for x, bins in (([4503599627370498.0], 1), ([1.0, np.nextafter(1.0, 2.0)], 5)):
        with pytest.raises(ValueError, match="too many bins"):
            # CPU input raises at once; CUDA input when the result first reaches the host
            tbfast.histogram(on(device, np.array(x)), bins=bins, backend=backend).numpy()
        with pytest.raises(ValueError, match="Too many bins"):
            np.histogram(x, bins=bins)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="no elements"):
        tbfast.histogram(torch.empty(0))
    with pytest.raises(ValueError, match="'w2'.*no elements"):
        tbfast.histograms({"w1": torch.ones(2), "w2": torch.empty(0, 3)})
    with pytest.raises(ValueError, match="positive"):
        tbfast.histogram([1.0], bins=0)
    with pytest.raises(ValueError, match="monotonically"):
        tbfast.histogram([1.0], bins=[0, 2, 1])
    with pytest.raises(ValueError, match="NaN"):
        tbfast.histogram([1.0], bins=[0, float("nan")])
    with pytest.raises(ValueError, match="tensorflow"):
        tbfast.histogram([1.0], bins="tensorflo")
    with pytest.raises(ValueError, match="max_bins"):
        tbfast.histogram([1.0], max_bins=0)
    with pytest.raises(TypeError, match="dtype"):
        tbfast.histogram(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(TypeError):
        tbfast.histogram("abc")
    with pytest.raises(ValueError, match="meta"):
        tbfast.histogram(torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="duplicate"):
        tbfast.histograms([("a", torch.ones(1)), ("a", torch.ones(1))])
    with pytest.raises(TypeError, match="named_tensors must be a mapping or an iterable"):
        tbfast.histograms(5)
    with pytest.raises(TypeError, match=r"named_tensors item 1 must be a \(name, tensor\) pair, got \('b',\)"):
        tbfast.histograms([("a", torch.ones(1)), ("b",)])
    with pytest.raises(TypeError, match="named_tensors item 0 must be a .* pair, got 'ab'"):
        tbfast.histograms(["ab"])
    with pytest.raises(TypeError, match=r"named_tensors item 0: tag must be a str, got list \['a'\]"):
        tbfast.histograms([(["a"], torch.ones(1))])


def test_requires_grad_and_views_are_fine(backend, device):
    require_backend("histogram", backend, device)
    p = torch.nn.Parameter(torch.randn(50))
    assert tbfast.histogram(on(device, p), backend=backend).num == 50
    x = torch.randn(1000)
    lazily_negated = x._neg_view()  # memory holds x, values are -x
    r = tbfast.histogram(on(device, lazily_negated), bins=7, backend=backend)
    np.testing.assert_array_equal(r.numpy()[0], np.histogram((-x).double().numpy(), bins=7)[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_deterministic_across_thread_counts(monkeypatch, dtype):
    # every CPU path: the double lanes, the float32 family's 16 lanes (AVX-512 default-edges
    # kernel included), the bfloat16 pattern path (>= 2^20 elements); >= 3 MiB for every
    # dtype, since the kernel starts a thread per MiB of input at most
    x = torch.from_numpy(np.random.default_rng(5).standard_normal(1_600_003) * 1e3).to(dtype)
    out = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("TBFAST_NUM_THREADS", n)
        r = tbfast.histogram(x, backend="native")
        out.append((r.sum, r.sum_squares, r.min, r.max, r.numpy()[0].tolist()))
    assert out[0] == out[1] == out[2]


def test_default_edges_equal_torch_writer_bins(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as w:
        torch_bins = w.default_bins
    assert H.default_edges().tolist() == torch_bins
    assert len(torch_bins) == 1549


finite_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=300),
       st.sampled_from(["tensorflow", "edges", 1, 5]),
       st.sampled_from(["native", "numba", "reference"]))
def test_property_against_oracle(values, bins, backend):
    x = np.array(values, dtype=np.float64)
    if bins == "edges":
        bins = [-1e10, -1.5, -1e-300, 0.0, 1e-300, 0.75, 3.0, 1e10]
    try:
        r = tbfast.histogram(x, bins=bins, backend=backend)
    except ValueError as exc:  # only where numpy refuses too
        assert "too many bins" in str(exc)
        # numpy raises "Too many bins", or, when max - min overflows float64, fails inside
        # its own indexing (IndexError)
        with pytest.raises((ValueError, IndexError)) as numpy_err:
            np.histogram(x[np.isfinite(x)], bins=bins)
        assert numpy_err.type is IndexError or "Too many bins" in str(numpy_err.value)
        return
    edges = r.numpy()[1].tolist()
    if bins == "tensorflow":
        assert edges == tensorflow_edges()
    assert r.numpy()[0].tolist() == counts_edges(x, edges)
    s = stats(x)
    assert r.num == s["num"] and (r.nan_count, r.posinf_count, r.neginf_count) == s["nonfinite"]
    if s["num"]:
        assert (r.min, r.max) == (s["min"], s["max"])
        if math.isfinite(s["sum"]) and math.isfinite(s["sum_squares"]):
            scale = sum(abs(v) for v in x if math.isfinite(v))
            assert abs(r.sum - s["sum"]) <= 1e-12 * (scale + 1)


F32_SCRIPT = """
import sys, numpy as np, torch, tbfast
rng = np.random.default_rng(7)
out = []
for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
    for n in (1, 7, 8, 9, 65543, 300001):
        x = torch.from_numpy(rng.standard_normal(n) * 10 ** rng.uniform(-8, 8, n)).to(dtype)
        x[:: 97] = float("nan"); x[3 :: 101] = float("inf"); x[5 :: 103] = -0.0
        for bins in ("tensorflow", 37, 1000):
            r = tbfast.histogram(x, bins=bins, backend="native")
            ref = np.histogram(x.double().numpy()[np.isfinite(x.double().numpy())], bins=r.numpy()[1])[0]
            assert (r.numpy()[0] == ref).all(), (dtype, n, bins)
            out.append((r.numpy()[0].tolist(), r.stats.tolist(), r.nonfinite.tolist()))
print(repr(out))
"""


def test_simd_and_scalar_paths_agree_bit_for_bit():
    runs = outputs_per_simd_level(F32_SCRIPT)
    assert len(set(runs)) == 1 and len(runs[0]) > 1000


# The double path (float64 and every integer dtype: AVX2 int->double conversions, 8 lanes
# of statistics, the f64 edge table fused in) against np.histogram on float64, printed so
# that the AVX2 and the scalar runs are compared bit for bit (signed zero of min/max too).
DOUBLE_SCRIPT = r"""
import numpy as np, torch, tbfast
rng = np.random.default_rng(13)
E = tbfast.default_edges()
CUSTOM = [-1e10, -2.5, -1e-300, 0.0, 1e-300, 0.75, 3.0, 1e10]
BIG = [-9.3e18, -2.0 ** 53 - 2, -2.0 ** 53, 0.0, 2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 53 + 4, 2.0 ** 63, 1.9e19]
out = []
def as64(t):
    return t.numpy().astype(np.float64)
def run(t, bins_list):
    x64 = as64(t)
    fin = x64[np.isfinite(x64)]
    for bins in bins_list:
        r = tbfast.histogram(t, bins=bins, backend="native")
        ref = np.histogram(fin, bins=r.numpy()[1])[0]
        assert (r.numpy()[0] == ref).all(), (t.dtype, t.numel(), bins)
        assert r.num == fin.size
        if fin.size:
            assert r.min == fin.min() and r.max == fin.max(), (t.dtype, r.min, r.max)
        out.append((r.numpy()[0].tolist(), repr(r.stats.tolist()), r.nonfinite.tolist()))
def tiled(vals, n):
    vals = np.asarray(vals)
    return vals[rng.integers(0, vals.size, n)]
e = E
special = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308,
           2.2250738585072009e-308, 1e-320, -1e-310, 1e-12, -1e-12, 1e20, -1e20, 1e300, -1e300,
           np.inf, -np.inf, np.nan, -np.nan]
# the AVX-512 kernel computes slots from the exponent and the top 23 mantissa bits: values
# near each edge at the scales of its error window (~1e-4 in log_1.1) and of that truncation
near = np.concatenate([e * (1 + d) for d in (1e-15, -1e-15, 1e-9, -1e-9, 1.1e-7, -1.1e-7, 2e-6, -2e-6, 1e-5, -1e-5,
                                            4e-5, -4e-5, 1e-4, -1e-4)])
f32_cut = e.astype(np.float32).astype(np.float64)  # the truncation's neighbours of each edge
f32_cut = np.concatenate([f32_cut, np.nextafter(f32_cut.astype(np.float32), np.float32(np.inf)).astype(np.float64),
                          np.nextafter(f32_cut.astype(np.float32), np.float32(-np.inf)).astype(np.float64)])
rng2 = np.random.default_rng(14)  # rng's stream stays as the integer cases below were written for
any_bits = rng2.integers(0, 0x7E00 << 48, 4000, dtype=np.int64).view(np.float64) * rng2.choice([-1.0, 1.0], 4000)
log_uniform = 10.0 ** rng2.uniform(-15, 23, 4000) * rng2.choice([-1.0, 1.0], 4000)
f64_vals = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), special, rng.standard_normal(500)])
more_vals = np.concatenate([f64_vals, near, f32_cut, any_bits, log_uniform, [8e307, -8e307]])
for n in (1, 7, 8, 9, 65543, 300001):
    x = tiled(f64_vals, n)
    run(torch.from_numpy(x), ("tensorflow", CUSTOM) + ((37,) if np.isfinite(x).any() else ()))
    run(torch.from_numpy(np.where(np.isfinite(x), x, 1.0) * 1e-3), (37,))
for n in (16, 17, 33, more_vals.size):  # every value, in steps of 16 and with tails
    x = more_vals[rng2.permutation(more_vals.size)[:n]]
    run(torch.from_numpy(x), ("tensorflow",))
run(torch.tensor([-0.0, 0.0, -0.0, 0.0, 0.0, -0.0, -0.0, 0.0, 0.0, -0.0, 0.0], dtype=torch.float64), ("tensorflow",))
run(torch.tensor([0.0, -0.0] * 9, dtype=torch.float64), ("tensorflow",))
int_extremes = {
    torch.int64: [2 ** 53 - 1, 2 ** 53, 2 ** 53 + 1, 2 ** 53 + 2, 2 ** 53 + 3, 2 ** 63 - 1, -2 ** 63, -2 ** 63 + 1,
                  2 ** 62 + 1, -2 ** 53 - 1, -2 ** 53 - 3, 2 ** 32 - 1, 2 ** 32, -2 ** 32, -1, 0, 1],
    torch.uint64: [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 + 1, 2 ** 53 + 3, 2 ** 63, 2 ** 63 + 1025, 2 ** 64 - 1,
                   2 ** 64 - 1025, 2 ** 64 - 1024, 2 ** 64 - 2049],
}
for dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32,
              torch.int64, torch.uint64):
    for n in (1, 9, 65543, 200003):
        if dtype == torch.bool:
            t = torch.from_numpy(rng.integers(0, 2, n).astype(bool))
        else:
            info = torch.iinfo(dtype)
            npdt = {torch.uint16: np.uint16, torch.uint32: np.uint32, torch.uint64: np.uint64}.get(dtype)
            if npdt is not None:
                v = rng.integers(0, int(info.max), n, dtype=npdt, endpoint=True)
                v[: n // 2] %= 5000
            else:
                v = rng.integers(int(info.min), int(info.max), n, endpoint=True)
                v[: n // 2] = rng.integers(max(info.min, -5000), min(info.max, 5000), n - n + n // 2)
            ext = int_extremes.get(dtype, [info.min, info.max, 0, -1 if info.min < 0 else 1])
            v = v.astype(npdt or np.int64)
            v[rng.integers(0, n, min(n, 50))] = np.array(ext, dtype=npdt or np.int64)[rng.integers(0, len(ext), min(n, 50))]
            t = torch.from_numpy(v.astype(npdt)) if npdt is not None else torch.from_numpy(v).to(dtype)
        run(t, ("tensorflow", BIG, 37))
print(repr(out))
"""


def test_double_path_simd_and_scalar_agree_bit_for_bit():
    # float64 and integer inputs, values on and next to every default edge, subnormals,
    # +-0, NaN/Inf, int64/uint64 beyond 2^53: exact (np.histogram on float64) on both paths
    require_backend("histogram", "native")
    runs = outputs_per_simd_level(DOUBLE_SCRIPT)
    assert len(set(runs)) == 1 and len(runs[0]) > 10000


H16_SCRIPT = r"""
import numpy as np, torch, tbfast
out = []
rng = np.random.default_rng(3)
patterns = np.arange(65536, dtype=np.uint16)
for dtype in (torch.float16, torch.bfloat16):
    for n in (65536, 65536 * 3 + 5):
        bits = patterns[rng.permutation(65536)] if n == 65536 else patterns[rng.integers(0, 65536, n)]
        t = torch.from_numpy(bits.view(np.int16)).view(dtype)
        x64 = t.double().numpy()
        fin = x64[np.isfinite(x64)]
        for bins in ("tensorflow", [-1e10, -2.5, -1e-30, 0.0, 1e-30, 0.75, 3.0, 1e10]):
            r = tbfast.histogram(t, bins=bins, backend="native")
            assert (r.numpy()[0] == np.histogram(fin, bins=r.numpy()[1])[0]).all(), (dtype, n, bins)
            assert (r.min, r.max) == (fin.min(), fin.max())
            out.append((r.numpy()[0].tolist(), repr(r.stats.tolist()), r.nonfinite.tolist()))
print(repr(out))
"""


def test_every_16bit_pattern_simd_and_scalar():
    # the float16/bfloat16 slot tables (EdgeLookup::h16) hold every bit pattern: each one,
    # NaN/Inf/subnormals/-0 included, lands where np.histogram on float64 puts it
    require_backend("histogram", "native")
    runs = outputs_per_simd_level(H16_SCRIPT)
    assert len(set(runs)) == 1 and len(runs[0]) > 1000


# Every float32 bit pattern (2^32 values: NaN/Inf, subnormals, +-0, each edge and its
# neighbours among them) through the default edges, in blocks of 2^26 consecutive
# patterns. The AVX-512 kernel computes these slots arithmetically and takes the exact
# table only near an edge; the AVX2 and scalar levels look every slot up in that table.
# Per block, counts, statistics and non-finite counts are printed as one digest, so the
# levels are compared on all 2^32 patterns; 2^22 patterns of one block in eight are also
# checked against np.histogram on float64.
ALL_F32_SCRIPT = r"""
import hashlib, numpy as np, torch, tbfast
bits = torch.arange(1 << 26, dtype=torch.int32) - (1 << 31)  # block b: signed patterns from -2^31 + b 2^26
edges = tbfast.default_edges()
for b in range(64):
    if b:
        bits += 1 << 26  # in place: no new 256 MB buffer per block
    x = bits.view(torch.float32)
    r = tbfast.histogram(x, backend="native")
    if b % 8 == 3:
        x64 = x[: 1 << 22].double().numpy()
        assert (tbfast.histogram(x[: 1 << 22], backend="native").numpy()[0] ==
                np.histogram(x64[np.isfinite(x64)], bins=edges)[0]).all(), b
    h = hashlib.sha256(repr((r.numpy()[0].tolist(), r.stats.tolist(), r.nonfinite.tolist())).encode()).hexdigest()
    print(b, h[:16], r.num, r.nonfinite.tolist())
"""


def test_every_float32_pattern_same_at_every_simd_level():
    require_backend("histogram", "native")
    runs = outputs_per_simd_level(ALL_F32_SCRIPT)
    assert len(set(runs)) == 1 and len(runs[0].splitlines()) == 64


# bfloat16 tensors of 2^20 elements or more are counted per bit pattern (csrc/cpu/
# histogram_cpu.cpp, the pattern path): every pattern (NaN/Inf/subnormals/-0 included) in
# tensors at the threshold, with a partial last chunk, and all one value; every bins mode.
# Counts equal np.histogram on float64, min/max are exact, sums equal math.fsum to
# rounding (relative to the sum of magnitudes); printed for the thread-count and SIMD-on/off comparisons.
PATTERN_SCRIPT = r"""
import math, os, numpy as np, torch, tbfast
rng = np.random.default_rng(17)
patterns = np.arange(65536, dtype=np.uint16)
out = []
def check(t):
    x64 = t.double().numpy()
    fin = x64[np.isfinite(x64)]
    for bins in ("tensorflow", [-1e10, -2.5, -1e-30, 0.0, 1e-30, 0.75, 3.0, 1e10], 37):
        r = tbfast.histogram(t, bins=bins, backend="native")
        assert (r.numpy()[0] == np.histogram(fin, bins=r.numpy()[1])[0]).all(), (t.numel(), bins)
        assert r.num == fin.size and (r.min, r.max) == (fin.min(), fin.max())
        assert r.nonfinite.tolist() == [int(np.isnan(x64).sum()), int((x64 == np.inf).sum()),
                                        int((x64 == -np.inf).sum())]
        # any summation order is within n * eps * sum|x| of the exact sum (fsum)
        assert abs(r.sum - math.fsum(fin)) <= 1e-12 * math.fsum(np.abs(fin)), (r.sum, math.fsum(fin))
        assert math.isclose(r.sum_squares, math.fsum(fin * fin), rel_tol=1e-12)
        out.append((r.numpy()[0].tolist(), repr(r.stats.tolist()), r.nonfinite.tolist()))
for n in (1 << 20, (1 << 21) + 12345):
    bits = patterns[rng.integers(0, 65536, n)]
    bits[:65536] = patterns
    check(torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16))
    check((torch.from_numpy(rng.standard_normal(n)) * 3).to(torch.bfloat16))
check(torch.full((1 << 20,), -0.75, dtype=torch.bfloat16))
print(repr(out))
"""


def test_bfloat16_pattern_path_exact_deterministic_simd_and_scalar():
    require_backend("histogram", "native")
    runs = outputs_per_simd_level(PATTERN_SCRIPT)
    assert len(set(runs)) == 1 and len(runs[0]) > 10000
    for threads in ("1", "3"):
        env = dict(os.environ, TBFAST_NUM_THREADS=threads)
        again = subprocess.run([sys.executable, "-c", PATTERN_SCRIPT], env=env, capture_output=True, text=True,
                               check=True).stdout
        assert again == runs[0], threads


def test_bfloat16_pattern_path_groups_and_order_free():
    # A call holds the pattern totals of at most 16 tensors at a time (csrc/cpu/
    # histogram_cpu.cpp, kPatternTensorsPerGroup): 18 pattern tensors between small ones on
    # other paths must each come out as in a call of their own. A pattern tensor's
    # statistics depend on its values alone, so its reversal gives the same bits.
    require_backend("histogram", "native")
    rng = np.random.default_rng(3)
    big = [(torch.from_numpy(rng.standard_normal((1 << 20) + 100_003 * k)) * (k + 1)).to(torch.bfloat16)
           for k in range(18)]
    big[5][::9] = float("nan")
    small = [torch.from_numpy(rng.standard_normal(1000)).to(torch.bfloat16) for _ in range(3)]
    tensors = [small[0]] + big[:9] + [small[1]] + big[9:] + [small[2]]

    def key(r):
        return r.numpy()[0].tolist(), r.numpy()[1].tolist(), repr(r.stats.tolist()), r.nonfinite.tolist()

    for bins in ("tensorflow", 64, [-3.0, -0.5, 0.0, 0.25, 2.0]):
        together = tbfast.histograms([(f"t{i}", t) for i, t in enumerate(tensors)], bins=bins, backend="native")
        for i, t in enumerate(tensors):
            alone = tbfast.histogram(t, bins=bins, backend="native")
            assert key(together[f"t{i}"]) == key(alone), (bins, i)
        for t in big[1:4]:
            assert key(tbfast.histogram(t.flip(0).contiguous(), bins=bins, backend="native")) == key(
                tbfast.histogram(t, bins=bins, backend="native")), bins
    x64 = big[5].double().numpy()
    assert tbfast.histogram(big[5], backend="native").nonfinite.tolist() == [int(np.isnan(x64).sum()), 0, 0]


def test_int64_beyond_2_pow_53_rounds_like_a_cast():
    big = np.array([2 ** 53 + 1, 2 ** 53 + 3, 2 ** 63 - 1, -2 ** 63, -2 ** 53 - 1] * 3, dtype=np.int64)
    edges = [-9.3e18, -2.0 ** 53, 2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 53 + 4, 9.3e18]
    for arr in (big, np.array([2 ** 64 - 1, 2 ** 63 + 1025, 2 ** 53 + 1] * 3, dtype=np.uint64)):
        for x in (arr, torch.from_numpy(arr) if arr.dtype == np.int64 else torch.from_numpy(arr.view(np.int64)).view(
                torch.uint64)):
            r = tbfast.histogram(x, bins=edges if arr.dtype == np.int64 else [0.0, 2.0 ** 53 + 2, 2.0 ** 63 + 2048,
                                                                               2.0 ** 64])
            np.testing.assert_array_equal(r.numpy()[0], np.histogram(arr.astype(np.float64), bins=r.numpy()[1])[0])
            assert r.max == arr.astype(np.float64).max() and r.min == arr.astype(np.float64).min()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=200),
       st.lists(st.floats(allow_nan=False, width=64), min_size=2, max_size=12, unique=True),
       st.sampled_from(["float32", "float16", "bfloat16"]))
def test_float_family_property_custom_edges(values, edges, dtype):
    edges = sorted(edges)
    t = torch.tensor(values, dtype=torch.float32).to(getattr(torch, dtype))
    x = as_float64(t)
    for backend in ("native", "numba", "reference"):
        r = tbfast.histogram(t, bins=edges, backend=backend)
        assert r.numpy()[0].tolist() == counts_edges(x, edges), backend
        assert r.num == int(np.isfinite(x).sum())


@pytest.mark.parametrize("last", [1.0, 0.1, 3.0e38, 1e300])
def test_float32_closed_last_bin(backend, device, last):
    # the float32 table folds "v == last edge" into the threshold above it
    require_backend("histogram", backend, device)
    edges = [-2.0, 0.0, 0.05, last]
    f = np.float32(min(last, 3.4e38))
    x = np.array([f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(0)), 0.0, -2.0,
                  np.nextafter(np.float32(-2.0), np.float32(-np.inf))], dtype=np.float32)
    r = tbfast.histogram(on(device, x), bins=edges, backend=backend)
    assert r.numpy()[0].tolist() == counts_edges(x, edges)
    assert r.numpy()[0].tolist() == np.histogram(x.astype(np.float64), bins=edges)[0].tolist()


def test_dense_edges_fall_back_from_the_float32_table():
    # 2000 edges inside [1, 1.001): many per float32 key, so the double lookup is used
    edges = np.sort(np.concatenate([1 + np.arange(2000) * 5e-7, [-np.inf, 1e300]]))
    x = np.random.default_rng(9).uniform(0.9995, 1.0015, 100_000).astype(np.float32)
    r = tbfast.histogram(x, bins=edges, backend="native")
    np.testing.assert_array_equal(r.numpy()[0], np.histogram(x.astype(np.float64), bins=edges)[0])


def test_forced_backend_env(monkeypatch):
    monkeypatch.setenv("TBFAST_BACKEND", "numba")
    assert tbfast.histogram([1.0, 2.0]).backend == "numba"
    monkeypatch.setenv("TBFAST_BACKEND", "bogus")
    with pytest.raises(backends.BackendUnavailable, match="bogus"):
        tbfast.histogram([1.0])
