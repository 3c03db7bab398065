"""PR curves: every backend against the naive oracle, torch parity (value for value, in
the written tensor), TensorBoard read-back, multi-class, accumulator, bad input.
CPU only; no test touches a GPU."""

import importlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.tensorboard._convert_np import make_np
from torch.utils.tensorboard.summary import compute_curve
from torch.utils.tensorboard.summary import pr_curve as torch_pr_curve

import tbfast
from tbfast import backends
from tests import oracle_pr_curve as oracle
from tests.conftest import outputs_per_simd_level, require_backend

P = importlib.import_module("tbfast.pr_curve")  # tbfast.pr_curve is the function
L = importlib.import_module("tbfast.pr_curve_logging")

PRED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LABEL_DTYPES = (torch.bool, torch.int64, torch.int32, torch.uint8, torch.int8, torch.float32, torch.float64)


@pytest.fixture
def be(backend):
    require_backend("pr_curve", backend)
    return backend


def _name(dtype):
    return str(dtype).split(".")[-1]


def make_preds(rng, n, t, dtype=torch.float32):
    """Probabilities in [0, 1] in ``dtype``: uniform, exactly on thresholds i/(T-1)
    (rounded to the dtype), and the dtype's neighbours of thresholds."""
    p = rng.random(n)
    k = rng.integers(0, t, n)
    mode = rng.integers(0, 4, n)
    p = np.where(mode == 1, k / (t - 1), p)
    x = torch.tensor(p, dtype=torch.float64).to(dtype)
    up = torch.nextafter(x, torch.ones_like(x))
    down = torch.nextafter(x, torch.zeros_like(x))
    x = torch.where(torch.tensor(mode == 2), up, x)
    x = torch.where(torch.tensor(mode == 3) & torch.tensor(p == k / (t - 1)), down, x)
    x = torch.where(torch.tensor(mode == 2) & torch.tensor(rng.random(n) < 0.5), down, x)
    return x.clamp(0, 1)


def make_labels(rng, n, dtype):
    return torch.tensor(rng.random(n) < 0.4).to(dtype)


def tensor_of(summary, i=0):
    v = summary.value[i]
    shape = [d.size for d in v.tensor.tensor_shape.dim]
    return np.frombuffer(v.tensor.tensor_content, dtype="<f4").reshape(shape), v


def torch_written(labels, preds, t, weights=None):
    """What torch's add_pr_curve writes: [6, min(T, 127)] float32 and the metadata bytes."""
    s = torch_pr_curve("t", make_np(labels), make_np(preds), t, weights)
    v = s.value[0]
    return np.array(v.tensor.float_val, dtype=np.float32).reshape(6, -1), v.metadata.plugin_data.content


# ---- oracle agreement, every backend ---------------------------------------------------


@pytest.mark.parametrize("pdtype", PRED_DTYPES, ids=_name)
@pytest.mark.parametrize("ldtype", (torch.bool, torch.int64, torch.float32, torch.int8), ids=_name)
@pytest.mark.parametrize("t", (2, 3, 127, 1000, 2049, 5000))
@pytest.mark.parametrize("weighted", (False, True))
def test_binary_matches_oracle(be, pdtype, ldtype, t, weighted):
    rng = np.random.default_rng(t * 7 + weighted)
    n = 1009
    preds = make_preds(rng, n, t, pdtype)
    labels = make_labels(rng, n, ldtype)
    w = rng.random(n) * 3 if weighted else None
    got = P.pr_curve(labels, preds, t, weights=w, backend=be)
    want, bad = oracle.binary_curve(preds.double().numpy(), labels.double().numpy(), t, w, _name(pdtype))
    assert not any(bad.values())
    if weighted:  # one block of rows: the same sequential float64 sums as the oracle
        np.testing.assert_array_equal(got.data, want)
    else:
        assert got.buckets.dtype == np.int64
        np.testing.assert_array_equal(got.data, want)


@pytest.mark.parametrize("n", (0, 1, 2, 7, 65535, 65537, 200003))
def test_odd_sizes_all_backends_agree(be, n):
    rng = np.random.default_rng(n)
    preds = make_preds(rng, n, 127)
    labels = make_labels(rng, n, torch.bool)
    w = rng.random(n)
    ref = compute_curve(make_np(labels), make_np(preds), 127, None)
    np.testing.assert_array_equal(P.pr_curve(labels, preds, backend=be).data, ref)
    # Weighted: np.histogram's block order is reproduced, so even > 65536 rows match exactly.
    ref_w = compute_curve(make_np(labels), make_np(preds), 127, w)
    np.testing.assert_array_equal(P.pr_curve(labels, preds, weights=w, backend=be).data, ref_w)


def test_empty_input_is_an_all_zero_curve():
    got = tbfast.pr_curve(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 5)
    assert got.data.shape == (6, 5) and not got.data.any()
    np.testing.assert_array_equal(got.data, compute_curve(np.zeros(0, bool), np.zeros(0, np.float32), 5))
    multi = tbfast.pr_curve(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 3), 5)
    assert multi.data.shape == (3, 6, 5) and not multi.data.any()


@pytest.mark.parametrize("pdtype", (torch.float16, torch.bfloat16), ids=_name)
@pytest.mark.parametrize("t", (2, 11, 127, 1000, 2049))
def test_every_16bit_value_matches_torch(be, pdtype, t):
    # All values of the dtype in [0, 1]: torch converts bf16 to fp16 and multiplies in fp16.
    bits = torch.arange(0, 0x3C01 if pdtype == torch.float16 else 0x3F81, dtype=torch.int32).to(torch.int16)
    preds = bits.view(pdtype)
    labels = torch.arange(preds.numel()) % 3 == 0
    got = P.pr_curve(labels, preds, t, backend=be).data
    np.testing.assert_array_equal(got, compute_curve(make_np(labels), make_np(preds), t))


def test_16bit_large_t_uses_float32_product():
    # T - 1 > 2048: float16 cannot resolve the thresholds (torch drops everything once T-1
    # overflows float16); tbfast uses the float32 product, as the oracle documents.
    preds = torch.linspace(0, 1, 999).to(torch.float16)
    labels = torch.arange(999) % 2 == 0
    t = 100_001
    assert not compute_curve(make_np(labels), make_np(preds), t)[0].any()  # torch: nothing left
    want, _ = oracle.binary_curve(preds.double().numpy(), labels.numpy(), t, None, "float16")
    np.testing.assert_array_equal(tbfast.pr_curve(labels, preds, t).data, want)


# ---- torch parity: the written tensor ---------------------------------------------------


@pytest.mark.parametrize("ldtype", LABEL_DTYPES, ids=_name)
@pytest.mark.parametrize("pdtype", (torch.float32, torch.float64, torch.float16, torch.bfloat16), ids=_name)
@pytest.mark.parametrize("t", (2, 10, 127))
@pytest.mark.parametrize("weights", (None, "f64", "f32", "scalar", "torch"))
def test_written_tensor_equals_torch(ldtype, pdtype, t, weights):
    rng = np.random.default_rng(t)
    n = 3001
    preds = make_preds(rng, n, t, pdtype)
    labels = make_labels(rng, n, ldtype)
    w_torch = w_ours = None
    if weights == "f64":
        w_torch = w_ours = rng.random(n) * 2
    elif weights == "f32":
        w_torch = w_ours = rng.random(n).astype(np.float32)
    elif weights == "scalar":
        w_torch = w_ours = 2.5
    elif weights == "torch":
        w_ours = torch.rand(n, dtype=torch.float32, generator=torch.Generator().manual_seed(t))
        w_torch = w_ours.numpy()
    want, meta = torch_written(labels, preds, t, w_torch)
    got, v = tensor_of(L.pr_curve_summary("t", tbfast.pr_curve(labels, preds, t, weights=w_ours)))
    np.testing.assert_array_equal(got, want)
    assert v.metadata.plugin_data.content == meta
    assert v.metadata.plugin_data.plugin_name == "pr_curves"


@pytest.mark.parametrize("t", (128, 1001, 100_000))
@pytest.mark.parametrize("pdtype", (torch.float32, torch.float64), ids=_name)
def test_beyond_127_equals_torch_formula_without_cap(t, pdtype):
    rng = np.random.default_rng(t)
    n = 20_011
    preds = make_preds(rng, n, t, pdtype)
    labels = make_labels(rng, n, torch.bool)
    w = rng.random(n)
    for weights in (None, w):
        want = compute_curve(make_np(labels), make_np(preds), t, weights).astype(np.float32)
        got, v = tensor_of(L.pr_curve_summary("t", tbfast.pr_curve(labels, preds, t, weights=weights)))
        np.testing.assert_array_equal(got, want)
        from tbfast.proto import PrCurvePluginData

        assert PrCurvePluginData.FromString(v.metadata.plugin_data.content).num_thresholds == t


@pytest.mark.parametrize("t", (42, 44, 1000))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=_name)
def test_rounding_at_boundaries(be, t, dtype):
    # fl(i/(T-1)) * (T-1) rounds below i for some i (6 of them for float32 at T=42): torch
    # puts those one bucket lower, and so must we, per dtype.
    preds = torch.tensor([i / (t - 1) for i in range(t)], dtype=torch.float64).to(dtype)
    prod = preds.numpy() * preds.numpy().dtype.type(t - 1)
    if t == 44 or (t == 42 and dtype == torch.float32):
        assert (np.floor(prod) != np.arange(t)).any()  # the case exists
    labels = torch.arange(t) % 2 == 0
    np.testing.assert_array_equal(P.pr_curve(labels, preds, t, backend=be).data,
                                  compute_curve(make_np(labels), make_np(preds), t))


def test_noncontiguous_and_numpy_inputs():
    rng = np.random.default_rng(5)
    base = torch.rand(64, 300, generator=torch.Generator().manual_seed(1))
    preds = base.t()[::2]  # strided view
    labels = torch.tensor(rng.random(preds.shape) < 0.5)
    want = compute_curve(make_np(labels.contiguous()), make_np(preds.contiguous()), 127)
    np.testing.assert_array_equal(tbfast.pr_curve(labels, preds).data, want)
    np.testing.assert_array_equal(tbfast.pr_curve(labels.numpy().tolist(), preds.numpy()).data, want)


def test_thread_count_does_not_change_results(monkeypatch):
    # 10 MB of float32 predictions: the kernel starts a thread per MiB of input at most
    # (csrc/cpu/parallel.h), so 1, 2 and 3 threads all run
    rng = np.random.default_rng(9)
    n = 2_500_007
    preds, labels, w = make_preds(rng, n, 127), make_labels(rng, n, torch.bool), rng.random(n)
    out = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("TBFAST_NUM_THREADS", threads)
        out.append((tbfast.pr_curve(labels, preds).data, tbfast.pr_curve(labels, preds, weights=w).data))
    for a, b in out[1:]:
        np.testing.assert_array_equal(a, out[0][0])
        np.testing.assert_array_equal(b, out[0][1])



# Every shape of the native float32 fast path (SIMD lane groups of G rows, tails, bad
# values inside a group, int32 and int64 counters) against the reference backend; printed
# so that the AVX2 and the scalar runs can be compared bit for bit.
SIMD_SCRIPT = r"""
import hashlib
import numpy as np, torch
import tbfast
rng = np.random.default_rng(11)
out = []
def state(acc):
    sd = acc.state_dict()
    return np.concatenate([np.asarray(sd["buckets"]).ravel(), np.asarray(sd["bad"])])
def check(a, b, what):
    assert np.array_equal(a, b), what
    out.append(hashlib.sha1(a.tobytes()).hexdigest()[:12])
def run(preds, labels, t, c, multilabel):
    res = [state(tbfast.PRCurveAccumulator(t, c, multilabel, backend=be).update(preds, labels))
           for be in ("native", "reference")]
    check(res[0], res[1], (preds.shape, labels.dtype, t, c, multilabel))
def make(n, c, t, bad):
    k = rng.integers(0, t, (n, c))
    x = np.where(rng.random((n, c)) < 0.5, rng.random((n, c)), k / (t - 1)).astype(np.float32)
    x = np.where(rng.random((n, c)) < 0.2, np.nextafter(x, np.float32(2)), x).clip(0, 1)
    x[rng.random((n, c)) < 0.02] = -0.0
    if bad:
        for v in (np.nan, -1e-30, 1.0000001, np.inf, 2.0):
            x[rng.random((n, c)) < 0.001] = v
    return torch.from_numpy(x)
for c in (1, 2, 3, 5, 8, 10, 12, 17, 64, 1025):
    for n in (1, 7, 9, 29) + ((65536 + 11,) if c in (1, 10) else (301,)):
        for t in ((2, 127, 1000) if c in (1, 3, 10) and n < 100 else (127,)) + ((300_000,) if c == 1 and n > 100 else ()):
            for bad in (False, True):
                preds = make(n, c, t, bad)
                idx = rng.integers(0, c, n)
                if bad:
                    idx[rng.random(n) < 0.002] = c
                    idx[rng.random(n) < 0.002] = -1
                for dt in (torch.int64, torch.int32, torch.uint8):
                    lab = torch.from_numpy(idx).to(dt) if dt != torch.uint8 else torch.from_numpy(idx % 256).to(dt)
                    run(preds, lab, t, c, False)
                m = rng.random((n, c)) < 0.3
                for dt in (torch.bool, torch.uint8, torch.int32, torch.int64, torch.float32, torch.float64):
                    lab = torch.from_numpy(m).to(dt)
                    if bad and dt != torch.bool:
                        lab[torch.from_numpy(rng.random((n, c)) < 0.002)] = 2
                        if dt.is_floating_point:
                            lab[torch.from_numpy(rng.random((n, c)) < 0.002)] = 0.5
                            lab[torch.from_numpy(rng.random((n, c)) < 0.002)] = float("nan")
                            lab[torch.from_numpy(rng.random((n, c)) < 0.002)] = -0.0
                    if c == 1:
                        res = [state(tbfast.PRCurveAccumulator(t, backend=be).update(preds.reshape(-1),
                                                                                      lab.reshape(-1)))
                               for be in ("native", "reference")]
                        check(res[0], res[1], (n, t, dt, bad))
                    run(preds, lab, t, c, True)
print(" ".join(out))
"""


def test_simd_and_scalar_paths_agree_bit_for_bit():
    require_backend("pr_curve", "native")
    runs = outputs_per_simd_level(SIMD_SCRIPT)
    assert len(set(runs)) == 1 and len(runs[0]) > 1000


# The AVX2 paths beyond float32 probabilities: float16/bfloat16/float64 probabilities,
# weighted sums (per-row float32/float64 weights, a scalar weight, bad weights), and logits
# (softmax, sigmoid) whose float32 approximation must give the scalar float64 buckets: rows
# built to sit on or within float32 rounding of a bucket boundary, ties, logits beyond
# +-64, saturated sigmoids, NaN/Inf. Printed so that the AVX2 and scalar runs are compared
# bit for bit (probabilities are checked against the reference backend as well).
SIMD_SCRIPT_2 = r"""
import hashlib
import numpy as np, torch
import tbfast
rng = np.random.default_rng(23)
out = []
def state(acc):
    sd = acc.state_dict()
    return np.concatenate([np.asarray(sd["buckets"], dtype=np.float64).ravel(), np.asarray(sd["bad"], np.float64)])
def record(a):
    out.append(hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:12])
def probs(n, c, t, dtype, bad):
    k = rng.integers(0, t, (n, c))
    x = np.where(rng.random((n, c)) < 0.5, rng.random((n, c)), k / (t - 1))
    x = np.where(rng.random((n, c)) < 0.2, np.nextafter(x, 2), x).clip(0, 1)
    x[rng.random((n, c)) < 0.02] = -0.0
    if bad:
        for v in (np.nan, -1e-30, 1.0000001, np.inf, 2.0):
            x[rng.random((n, c)) < 0.001] = v
    return torch.from_numpy(x).to(dtype)
def logits(n, c, t, dtype, bad, mode):
    x = rng.standard_normal((n, c)) * 3
    if t < 4:
        pass
    elif mode == "multiclass" and c > 1:
        # p_0 = 1 / (1 + sum_j exp(x_j - x_0)): put p_0 on or next to k / (t - 1)
        rows = rng.random(n) < 0.3
        q = rng.integers(1, t - 1, n) / (t - 1) * (1 + rng.choice([0, 1e-7, -1e-7, 3e-6], n))
        rest = np.log(np.exp(x[:, 1:]).sum(axis=1))
        x[rows, 0] = (rest + np.log(q / (1 - q)))[rows]
        x[rng.random(n) < 0.05] = 1.5  # ties: p = 1 / c
    else:
        q = rng.integers(1, t - 1, (n, c)) / (t - 1) * (1 + rng.choice([0, 1e-7, -1e-7, 3e-6], (n, c)))
        x = np.where(rng.random((n, c)) < 0.3, np.log(q / (1 - q)), x)
        x[rng.random((n, c)) < 0.03] = rng.choice([36.0, 37.5, 38.0, 40.0, 64.0, 100.0, -100.0, -64.0, 1e30, -1e30])
    x[rng.random((n, c)) < 0.01] = rng.choice([70.0, -70.0, 200.0])  # beyond +-64
    if bad:
        x[rng.random((n, c)) < 0.002] = np.nan
        x[rng.random((n, c)) < 0.002] = np.inf
    return torch.from_numpy(x).to(dtype)
def weights(n, kind):
    if kind is None:
        return None
    if kind == "scalar":
        return 0.75
    w = rng.random(n) * 3
    w[rng.random(n) < 0.002] = -1.0
    w[rng.random(n) < 0.002] = np.nan
    return torch.from_numpy(w).to(kind)
def run(preds, labels, t, c, mode, logit, w, check_reference):
    res = []
    for be in (("native", "reference") if check_reference else ("native",)):
        acc = tbfast.PRCurveAccumulator(t, None if mode == "binary" else c, mode == "multilabel", logits=logit,
                                        backend=be)
        res.append(state(acc.update(preds, labels, weights=w)))
    if check_reference:
        assert np.array_equal(res[0], res[1]), (preds.dtype, preds.shape, t, c, mode, logit)
    record(res[0])
for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
    for c in (1, 3, 10, 17):
        for n in ((9, 65536 + 13) if c in (1, 10) else (301,)):
            for t in ((2, 127, 2049, 5000) if n < 100 else (127,)):
                for bad in (False, True):
                    for wk in (None, torch.float64, torch.float32, "scalar"):
                        p = probs(n, c, t, dtype, bad)
                        idx = torch.from_numpy(rng.integers(0, c, n))
                        m = torch.from_numpy(rng.random((n, c)) < 0.3)
                        if c == 1:
                            run(p.reshape(-1), m.reshape(-1), t, c, "binary", False, weights(n, wk), True)
                            continue
                        run(p, idx, t, c, "multiclass", False, weights(n, wk), True)
                        run(p, m.to(torch.int64), t, c, "multilabel", False, weights(n, wk), True)
                        if wk is None or wk is torch.float64:
                            lg = logits(n, c, t, dtype, bad, "multiclass")
                            run(lg, idx, t, c, "multiclass", True, weights(n, wk), False)
                            onehot = torch.nn.functional.one_hot(idx, c)
                            run(lg, onehot, t, c, "multiclass", True, weights(n, wk), False)
                            lg = logits(n, c, t, dtype, bad, "multilabel")
                            run(lg, m, t, c, "multilabel", True, weights(n, wk), False)
print(" ".join(out))
"""


def test_simd_and_scalar_paths_agree_bit_for_bit_every_dtype_weights_logits():
    require_backend("pr_curve", "native")
    runs = outputs_per_simd_level(SIMD_SCRIPT_2)
    assert len(set(runs)) == 1 and len(runs[0].split()) > 300


@pytest.mark.parametrize("prob", ("softmax", "sigmoid"))
@pytest.mark.parametrize("pdtype", (torch.float32, torch.float64, torch.float16))
def test_logits_on_bucket_boundaries_match_oracle(prob, pdtype):
    # probabilities within float32 rounding of k / (T - 1): the SIMD path must recheck them
    rng = np.random.default_rng(31)
    n, c, t = 3000, 3, 101
    q = rng.integers(1, t - 1, (n, c)) / (t - 1) * (1 + rng.choice([0, 1e-7, -1e-7, 1e-6], (n, c)))
    if prob == "softmax":
        x = rng.standard_normal((n, c))
        rest = np.log(np.exp(x[:, 1:]).sum(axis=1))
        x[:, 0] = rest + np.log(q[:, 0] / (1 - q[:, 0]))
        x[::7] = 0.25  # ties
        x[5::11, 1] = 80.0  # beyond +-64: the scalar code
        labels = rng.integers(0, c, n)
        got = P.pr_curve(labels, torch.from_numpy(x).to(pdtype), t, logits=True).data
        want, bad = oracle.curves(torch.from_numpy(x).to(pdtype).double().numpy(), labels, t, label_index=True,
                                  prob="softmax")
    else:
        x = np.log(q / (1 - q))
        x[::13] = rng.choice([37.0, 38.0, 45.0, 100.0, -100.0], x[::13].shape)
        labels = (rng.random((n, c)) < 0.5).astype(np.int64)
        got = P.pr_curve(labels, torch.from_numpy(x).to(pdtype), t, mode="multilabel", logits=True).data
        want, bad = oracle.curves(torch.from_numpy(x).to(pdtype).double().numpy(), labels, t, prob="sigmoid")
    assert not any(bad.values())
    np.testing.assert_array_equal(got, want)

# ---- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("bad_pred, kind", [
    (float("nan"), "NaN predictions"),
    (-0.25, "predictions outside [0, 1]"),
    (1.0 + 1e-6, "predictions outside [0, 1]"),  # torch keeps this one in the last bucket
    (2.0, "predictions outside [0, 1]"),  # torch drops this one silently
    (float("inf"), "predictions outside [0, 1]"),
])
def test_bad_predictions_raise_where_torch_drops(be, bad_pred, kind):
    preds = torch.tensor([0.1, bad_pred, 0.7, bad_pred])
    labels = torch.tensor([True, False, True, True])
    with pytest.raises(P.PRCurveValueError, match="2 bad values") as info:
        P.pr_curve(labels, preds, backend=be)
    assert info.value.counts == {kind: 2}
    compute_curve(make_np(labels), make_np(preds), 127)  # torch does not complain


@pytest.mark.parametrize("labels, kind", [
    ([0, 2, 1, 1], "labels that are neither 0 nor 1"),
    ([0, -1, 1, 1], "labels that are neither 0 nor 1"),
    ([0.0, 0.5, 1.0, 1.0], "labels that are neither 0 nor 1"),
    ([0.0, float("nan"), 1.0, 1.0], "labels that are neither 0 nor 1"),
])
def test_bad_labels(be, labels, kind):
    with pytest.raises(P.PRCurveValueError, match="1 bad value") as info:
        P.pr_curve(labels, [0.1, 0.2, 0.3, 0.4], backend=be)
    assert info.value.counts == {kind: 1}


def test_bad_weights_and_indices(be):
    with pytest.raises(P.PRCurveValueError) as info:
        P.pr_curve([0, 1, 1], [0.1, 0.2, 0.3], weights=[1.0, -1.0, float("nan")], backend=be)
    assert info.value.counts == {"negative, NaN or infinite weights": 2}
    with pytest.raises(P.PRCurveValueError):
        P.pr_curve([0, 1, 1], [0.1, 0.2, 0.3], weights=-2.0, backend=be)
    with pytest.raises(P.PRCurveValueError) as info:
        P.pr_curve(np.array([0, 3, -1, 2]), np.full((4, 3), 0.5), backend=be)
    assert info.value.counts == {"class indices out of range": 2}


def test_several_kinds_counted_together(be):
    preds = np.array([np.nan, 1.5, -1, 0.5, 0.5, 0.2], dtype=np.float32)
    labels = np.array([1, 1, 0, 3, 1, 0])
    with pytest.raises(P.PRCurveValueError, match="4 bad values") as info:
        P.pr_curve(labels, preds, backend=be)
    assert info.value.counts == {"NaN predictions": 1, "predictions outside [0, 1]": 2,
                                 "labels that are neither 0 nor 1": 1}


@pytest.mark.parametrize("call, exc", [
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2, 0.3]), ValueError),
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2], weights=[1.0]), ValueError),
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2], num_thresholds=1), ValueError),
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2], num_thresholds=(1 << 24) + 1), ValueError),
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2], num_thresholds=12.0), TypeError),
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2], num_thresholds=True), TypeError),
    (lambda: tbfast.pr_curve(np.zeros(3), np.zeros((3, 2)), mode="multiclass"), TypeError),
    (lambda: tbfast.pr_curve(np.zeros((3, 3)), np.zeros((3, 2)), mode="multiclass"), ValueError),
    (lambda: tbfast.pr_curve(np.zeros(4, int), np.zeros((3, 2))), ValueError),
    (lambda: tbfast.pr_curve(np.zeros(3, int), np.zeros(3), mode="multilabel"), ValueError),
    (lambda: tbfast.pr_curve(["a", "b"], [0.1, 0.2]), TypeError),
    (lambda: tbfast.pr_curve([0, 1], np.array([0.1, 0.2], dtype=np.complex64)), TypeError),
    (lambda: tbfast.pr_curve([0, 1], [0.1, 0.2], mode="nope"), ValueError),
])
def test_shape_dtype_errors(call, exc):
    with pytest.raises(exc):
        call()


def test_forced_unavailable_backend_on_cuda_is_an_error():
    job_device = "cuda"
    with pytest.raises(backends.BackendUnavailable, match="pr_curve"):
        backends.select("pr_curve", job_device, "native")


# ---- multi-class ------------------------------------------------------------------------


@pytest.mark.parametrize("labels_kind", ("index", "onehot", "multilabel"))
@pytest.mark.parametrize("weighted", (False, True))
@pytest.mark.parametrize("pdtype", (torch.float32, torch.float16, torch.float64), ids=_name)
def test_multiclass_equals_separate_binary_curves(be, labels_kind, weighted, pdtype):
    rng = np.random.default_rng(3)
    n, c, t = 70_001, 5, 127
    preds = make_preds(rng, n * c, t, pdtype).reshape(n, c)
    idx = torch.tensor(rng.integers(0, c, n))
    if labels_kind == "index":
        labels, mode = idx, "multiclass"
    elif labels_kind == "onehot":
        labels, mode = torch.nn.functional.one_hot(idx, c).to(torch.uint8), "multiclass"
    else:
        labels, mode = torch.tensor(rng.random((n, c)) < 0.3), "multilabel"
    w = rng.random(n) if weighted else None
    got = P.pr_curve(labels, preds, t, weights=w, mode=mode, backend=be)
    assert got.data.shape == (c, 6, t) and len(got) == c
    for k in range(c):
        lab = (idx == k) if labels_kind == "index" else labels[:, k].bool()
        want = compute_curve(make_np(lab), make_np(preds[:, k].contiguous()), t, w)
        np.testing.assert_array_equal(got.data[k], want)
        np.testing.assert_array_equal(got[k].data, want)


@pytest.mark.parametrize("prob", ("softmax", "sigmoid"))
def test_logits_match_oracle(be, prob):
    rng = np.random.default_rng(4)
    n, c, t = 2000, 4, 101
    logits = (rng.standard_normal((n, c)) * 4).astype(np.float32)
    logits[rng.random((n, c)) < 0.01] = 0.0
    idx = rng.integers(0, c, n)
    if prob == "softmax":
        got = P.pr_curve(idx, logits, t, logits=True, backend=be).data
        want, bad = oracle.curves(logits, idx, t, label_index=True, prob="softmax")
    else:
        ml = (rng.random((n, c)) < 0.5).astype(np.int64)
        got = P.pr_curve(ml, logits, t, mode="multilabel", logits=True, backend=be).data
        want, bad = oracle.curves(logits, ml, t, prob="sigmoid")
    assert not any(bad.values())
    if be == "reference":  # NumPy's SIMD exp may differ from libm's in the last bit
        assert np.abs(got[:, :4] - want[:, :4]).max() <= 2
    else:
        np.testing.assert_array_equal(got, want)


def test_softmax_logits_equal_probabilities_curve():
    # Away from bucket boundaries, logits=True equals bucketing torch.softmax's output.
    rng = np.random.default_rng(8)
    logits = torch.tensor(rng.standard_normal((5000, 3)))
    idx = torch.tensor(rng.integers(0, 3, 5000))
    probs = torch.softmax(logits, dim=1)
    a = tbfast.pr_curve(idx, logits, 11, logits=True).data
    b = tbfast.pr_curve(idx, probs, 11).data
    assert np.abs(a[:, :4] - b[:, :4]).max() <= 1


def test_nonfinite_logits_are_bad():
    with pytest.raises(P.PRCurveValueError) as info:
        tbfast.pr_curve([0, 1], np.array([[0.0, np.inf], [np.nan, 1.0]]), logits=True)
    assert info.value.counts == {"NaN or infinite logits": 2}


def test_huge_thresholds_multiclass():
    rng = np.random.default_rng(6)
    preds = rng.random((5000, 3))
    idx = rng.integers(0, 3, 5000)
    got = tbfast.pr_curve(idx, preds, 100_000)
    for k in range(3):
        np.testing.assert_array_equal(got.data[k], compute_curve(idx == k, preds[:, k].copy(), 100_000))


# ---- accumulator ------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", (None, 4))
@pytest.mark.parametrize("weighted", (False, True))
def test_accumulator_equals_one_call(be, num_classes, weighted):
    rng = np.random.default_rng(11)
    n, c = 50_000, 4
    preds = rng.random((n, c) if num_classes else n).astype(np.float32)
    labels = rng.integers(0, c, n) if num_classes else rng.random(n) < 0.3
    w = rng.random(n) if weighted else None
    acc = P.PRCurveAccumulator(201, num_classes, backend=be)
    sizes = [0, 1, 999, 7, 20_000, n - 21_007]
    start = 0
    for s in sizes:
        acc.update(preds[start:start + s], labels[start:start + s], None if w is None else w[start:start + s])
        start += s
    assert start == n
    whole = P.pr_curve(labels, preds, 201, weights=w, backend=be)
    got = acc.compute().data
    if weighted:  # different grouping of the float64 sums: equal to rounding
        np.testing.assert_allclose(got, whole.data, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(got, whole.data)


def test_accumulator_merge_and_state_dict():
    rng = np.random.default_rng(12)
    preds = rng.random((3000, 3))
    labels = rng.integers(0, 3, 3000)
    a, b = P.PRCurveAccumulator(50, 3), P.PRCurveAccumulator(50, 3)
    a.update(preds[:1000], labels[:1000])
    b.update(preds[1000:], labels[1000:])
    whole = tbfast.pr_curve(labels, preds, 50).data
    np.testing.assert_array_equal(a.merge(b).compute().data, whole)
    c = P.PRCurveAccumulator(50, 3).load_state_dict(a.state_dict())
    np.testing.assert_array_equal(c.compute().data, whole)
    sd = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in a.state_dict().items()}
    np.testing.assert_array_equal(P.PRCurveAccumulator(50, 3).load_state_dict(sd).compute().data, whole)
    # a weighted half merged into an unweighted one: weight 1 for the unweighted samples
    d = P.PRCurveAccumulator(50, 3)
    d.update(preds[:1000], labels[:1000], weights=np.ones(1000))
    e = P.PRCurveAccumulator(50, 3)
    e.update(preds[1000:], labels[1000:])
    np.testing.assert_array_equal(e.merge(d).compute().data, whole)
    with pytest.raises(ValueError):
        a.merge(P.PRCurveAccumulator(51, 3))
    a.reset()
    assert not a.compute().data.any()


def test_accumulator_defers_value_checks_and_keeps_constant_state():
    acc = P.PRCurveAccumulator(127)
    ids = None
    for i in range(20):
        acc.update(np.array([0.5, np.nan if i == 3 else 0.2]), np.array([1, 0]))
        st = acc.state_dict()["buckets"]
        assert st.shape == (1, 127, 2)
        ids = ids or id(st)
        assert id(st) == ids  # updated in place, never regrown
    with pytest.raises(P.PRCurveValueError, match="1 NaN predictions"):
        acc.compute()


def test_accumulator_modes():
    rng = np.random.default_rng(13)
    logits = rng.standard_normal((500, 3))
    ml = rng.random((500, 3)) < 0.5
    acc = P.PRCurveAccumulator(33, 3, multilabel=True, logits=True)
    acc.update(logits, ml)
    np.testing.assert_array_equal(acc.compute().data,
                                  tbfast.pr_curve(ml, logits, 33, mode="multilabel", logits=True).data)
    with pytest.raises(ValueError):
        acc.update(logits[:, :2], ml[:, :2])
    with pytest.raises(ValueError):
        P.PRCurveAccumulator(33, multilabel=True)


# ---- property test against the oracle ---------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_against_oracle(data):
    t = data.draw(st.integers(2, 300), label="T")
    n = data.draw(st.integers(0, 60), label="n")
    dtype = data.draw(st.sampled_from(["float16", "float32", "float64"]), label="dtype")
    vals = data.draw(st.lists(st.one_of(st.floats(0, 1, width=16 if dtype == "float16" else 32 if dtype == "float32"
                                                  else 64),
                                        st.integers(0, t - 1).map(lambda i: i / (t - 1))),
                              min_size=n, max_size=n), label="preds")
    preds = np.array(vals, dtype=dtype)
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    weighted = data.draw(st.booleans())
    w = np.array(data.draw(st.lists(st.floats(0, 10), min_size=n, max_size=n))) if weighted else None
    want, _ = oracle.binary_curve(preds.astype(np.float64), labels, t, w, dtype)
    for be in backends.BACKENDS:
        got = P.pr_curve(labels, preds, t, weights=w, backend=be).data
        np.testing.assert_array_equal(got, want)


# ---- writer, packing, TensorBoard read-back ---------------------------------------------


def _plugin_response(logdir, run, tag):
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.pr_curve import pr_curves_plugin

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin = pr_curves_plugin.PrCurvesPlugin(base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                                                                   data_provider=provider))
    resp = plugin.pr_curves_impl(context.RequestContext(), "", [run], tag)[run]
    for entry in resp:
        entry.pop("wall_time")
    return resp


@pytest.mark.parametrize("t", (127, 1001))
def test_tensorboard_reads_back_like_torch(tmp_path, t):
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    rng = np.random.default_rng(t)
    n = 10_000
    preds = make_preds(rng, n, t)
    labels = make_labels(rng, n, torch.bool)
    w = rng.random(n)
    with tbfast.SummaryWriter(str(tmp_path / "ours")) as ours:
        ours.add_pr_curve("pr", labels, preds, 3, num_thresholds=t)
        ours.add_pr_curve("prw", labels, preds, 3, num_thresholds=t, weights=w)
    theirs = TorchWriter(str(tmp_path / "torch"))
    if t <= 127:
        theirs.add_pr_curve("pr", labels, preds, 3, num_thresholds=t)
        theirs.add_pr_curve("prw", labels, preds, 3, num_thresholds=t, weights=w)
    else:  # torch caps add_pr_curve at 127; its formula without the cap, through its raw path
        for tag, weights in (("pr", None), ("prw", w)):
            d = compute_curve(make_np(labels), make_np(preds), t, weights)
            theirs.add_pr_curve_raw(tag, *d, global_step=3, num_thresholds=t)
    theirs.close()
    for tag in ("pr", "prw"):
        a = _plugin_response(tmp_path, "ours", tag)
        b = _plugin_response(tmp_path, "torch", tag)
        assert a == b
        assert len(a[0]["thresholds"]) > 100


def test_writer_methods_and_tags(tmp_path):
    from tests.conftest import values_by_tag

    rng = np.random.default_rng(14)
    preds = rng.random((400, 3))
    idx = rng.integers(0, 3, 400)
    acc = tbfast.PRCurveAccumulator(64, 3)
    acc.update(preds, idx)
    bin_acc = tbfast.PRCurveAccumulator(64)
    bin_acc.update(preds[:, 0], idx == 0)
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        w.add_pr_curves("cls", idx, preds, 1, num_thresholds=64, class_names=["cat", "dog", "eel"])
        w.add_pr_curves("num", idx, preds, 1, num_thresholds=64)
        w.add_pr_accumulator("acc", acc, 2)
        w.add_pr_accumulator("bin", bin_acc, 2)
        d = compute_curve(idx == 1, preds[:, 1].copy(), 300)
        w.add_pr_curve_raw("raw", *[torch.tensor(r) for r in d], global_step=5, num_thresholds=300)
        with pytest.raises(ValueError, match="add_pr_curve\\('bad'\\)"):
            w.add_pr_curve("bad", [0, 1], [0.5, 1.5])
        with pytest.raises(ValueError):
            w.add_pr_curves("cls", idx, preds, 1, class_names=["a"])
    tags = values_by_tag(tmp_path)
    assert {"cls/cat", "cls/dog", "cls/eel", "num/0", "num/1", "num/2", "acc/0", "acc/2", "bin", "raw"} <= set(tags)
    from tensorboard.util import tensor_util

    got = tensor_util.make_ndarray(tags["cls/dog"][0][1].tensor)
    np.testing.assert_array_equal(got, compute_curve(idx == 1, preds[:, 1].copy(), 64).astype(np.float32))
    np.testing.assert_array_equal(tensor_util.make_ndarray(tags["acc/1"][0][1].tensor), got)
    np.testing.assert_array_equal(tensor_util.make_ndarray(tags["bin"][0][1].tensor),
                                  compute_curve(idx == 0, preds[:, 0].copy(), 64).astype(np.float32))
    np.testing.assert_array_equal(tensor_util.make_ndarray(tags["raw"][0][1].tensor), d.astype(np.float32))
    assert tags["raw"][0][0] == 5


def test_accelerate_covers_add_pr_curve(tmp_path):
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from tests.conftest import values_by_tag

    assert "add_pr_curve" in L.PRCurveLogging.ACCELERATED
    w = tbfast.accelerate(TorchWriter(str(tmp_path)))
    rng = np.random.default_rng(15)
    preds, labels = rng.random(1000), rng.random(1000) < 0.5
    w.add_pr_curve("big", labels, preds, 0, num_thresholds=500)
    w.close()
    v = values_by_tag(tmp_path)["big"][0][1]
    from tensorboard.util import tensor_util

    np.testing.assert_array_equal(tensor_util.make_ndarray(v.tensor),
                                  compute_curve(labels, preds, 500).astype(np.float32))


def test_summary_packers_are_pure():
    data = compute_curve(np.array([1, 0, 1]), np.array([0.2, 0.5, 0.9]), 7)
    s = L.pr_curve_summary("x", data)
    arr, v = tensor_of(s)
    np.testing.assert_array_equal(arr, data.astype(np.float32))
    assert v.tag == "x" and v.tensor.dtype == 1 and not v.tensor.float_val
    multi = L.pr_curves_summary("m", np.stack([data, data]), ["a", "b"])
    assert [x.tag for x in multi.value] == ["m/a", "m/b"]
    with pytest.raises(ValueError):
        L.pr_curve_summary("x", data[:5])


def test_numba_handles_large_bucket_counts_math():
    # bucket helper of the numba kernel agrees with the oracle's float16 rule
    pytest.importorskip("numba")
    from tbfast.numba_kernels import pr_curve_numba as k

    for bits in range(0, 0x3C01, 97):
        v = np.array([bits], np.uint16).view(np.float16)[0]
        assert k._bucket(np.float32(v), np.float32(126), True) == oracle.bucket(float(v), "float16", 127)


def test_module_names():
    assert tbfast.pr_curve is P.pr_curve and tbfast.PRCurveAccumulator is P.PRCurveAccumulator
