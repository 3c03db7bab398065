"""The Numba CUDA PR-curve kernels (tbfast/numba_kernels/pr_curve_numba_cuda.py) against
the CPU native backend (itself tested against torch) and the NumPy reference backend.

They run under the Numba CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1
before numba is imported), or on a GPU with TBFAST_TEST_NUMBA_CUDA=device. The simulator
runs every CUDA thread as a Python thread, so inputs stay at a few thousand predictions.
Jobs are built by tbfast.pr_curve._prepare (the real validation and normalisation); the
state is attached here. Unweighted counts and bad-value counts must equal the CPU's;
weighted sums are exact fixed-point sums rounded once, so they are compared with the
CPU's float64 sums within the CPU's own rounding error, and bit for bit where every sum
is exact (dyadic weights) or against exact rational sums.
"""

import importlib
import math
import os
import subprocess
import sys
from fractions import Fraction
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

pytest.importorskip("numba.cuda")

from tbfast import _dtypes  # noqa: E402

K = importlib.import_module("tbfast.numba_kernels.pr_curve_numba_cuda")
P = importlib.import_module("tbfast.pr_curve")

if not K.SIMULATOR:
    from numba import cuda as _cuda

    if not (torch.cuda.is_available() and _cuda.is_available()):
        pytest.skip("neither the Numba CUDA simulator nor a CUDA GPU", allow_module_level=True)
DEVICE = "cpu" if K.SIMULATOR else "cuda"

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # simulator: uint64 wraps

PRED_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
LABEL_DTYPES = [torch.bool, torch.uint8, torch.int32, torch.int64, torch.float32, torch.float64]
BAD_WEIGHT = 5


# ---- running the kernels and the CPU backends on the same inputs -------------------------


def _dev(x):
    return x.to(DEVICE) if isinstance(x, torch.Tensor) else x


def new_state(C, T, weighted, fill=None):
    """A state on DEVICE, zero or pre-filled with ``fill`` ((values, bad) arrays)."""
    if fill is None:
        vals = np.zeros((C, T, 2), np.float64 if weighted else np.int64)
        bad = np.zeros(8, np.int64)
    else:
        vals, bad = fill
    vals = torch.from_numpy(np.array(vals)).to(DEVICE)
    return NS(counts=None if weighted else vals, sums=vals if weighted else None,
              bad=torch.from_numpy(np.array(bad)).to(DEVICE))


def run_kernel(labels, preds, T, weights=None, mode="auto", logits=False, state=None):
    """Run K.run on a job from the real _prepare; returns (values, bad) as NumPy."""
    job = P._prepare(_dev(labels), _dev(preds), T, _dev(weights), mode, logits)
    ns = NS(**{s: getattr(job, s) for s in P._Job.__slots__ if hasattr(job, s)})
    ns.state = new_state(job.num_classes, T, job.weighted) if state is None else state
    ns.stream = torch.cuda.current_stream().cuda_stream if DEVICE == "cuda" else None
    assert K.run(ns) is None
    st = ns.state
    vals = st.sums if job.weighted else st.counts
    return vals.cpu().numpy(), st.bad.cpu().numpy()


def run_cpu(backend, labels, preds, T, weights=None, mode="auto", logits=False):
    """The CPU native or NumPy reference backend, without the bad-value check."""
    job = P._prepare(labels, preds, T, weights, mode, logits)
    st = P._State(job.num_classes, T, job.weighted)
    job.state = st
    {"native": P._native_cpu, "reference": P._reference_cpu}[backend](job)
    return st.values(), st.bad


def check(labels, preds, T, weights=None, mode="auto", logits=False, reference=True, exact_sums=False):
    """Kernel == native (== reference): counts and bad counts exactly, sums as documented."""
    got, bad = run_kernel(labels, preds, T, weights, mode, logits)
    backends = ("native", "reference") if reference else ("native",)
    for name in backends:
        want, wbad = run_cpu(name, labels, preds, T, weights, mode, logits)
        np.testing.assert_array_equal(bad, wbad, err_msg=f"bad counts vs {name}")
        if got.dtype == np.int64:
            np.testing.assert_array_equal(got, want, err_msg=f"counts vs {name}")
        elif exact_sums:
            np.testing.assert_array_equal(got, want, err_msg=f"sums vs {name}")
        else:  # the CPU's float64 sums carry up to (n - 1) roundings
            n = max(1, preds.numel())
            np.testing.assert_allclose(got, want, rtol=2.3e-16 * n, atol=0, err_msg=f"sums vs {name}")
            assert ((got == 0) == (want == 0)).all()
    return got, bad


# ---- inputs ---------------------------------------------------------------------------------


def probabilities(shape, T, dtype, seed, bad=False):
    """Probabilities in [0, 1] with thresholds k/(T-1) and their neighbours, 0, 1, -0.0;
    with ``bad``: NaN, infinities and values just outside [0, 1] too."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape).reshape(-1)
    n = x.size
    q = n // 3
    th = rng.integers(0, T, q) / (T - 1)
    x[:q] = th
    x[q:2 * q] = np.nextafter(th, rng.choice([-np.inf, np.inf], q))
    special = [0.0, 1.0, -0.0, 0.5, 1e-9]
    if bad:
        special += [np.nan, -1e-3, 1.0 + 1e-3, np.inf, -np.inf, np.nan, -5.0, 7.0]
    idx = rng.choice(n, min(n, len(special)), replace=False)
    x[idx] = special[:idx.size]
    if not bad:
        x = np.clip(x, 0.0, 1.0)
    t = torch.from_numpy(x.reshape(shape)).to(dtype)
    if not bad:
        t = t.clamp(0.0, 1.0)  # rounding to 16 bits may not leave [0, 1], but clamp of 1 + ulp does
    return t


def binary_labels(shape, dtype, seed, bad=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, shape)
    if dtype == torch.bool:
        t = torch.from_numpy(y.astype(np.uint8))
        if bad:  # bytes other than 0/1 in a bool tensor: true, as torch reads them
            t.view(-1)[:3] = torch.tensor([2, 255, 7], dtype=torch.uint8)
        return t.view(torch.bool)
    y = y.astype(np.float64)
    if bad:
        special = [2.0, -1.0, 3.0] + ([0.5, np.nan, np.inf] if dtype.is_floating_point else [])
        flat = y.reshape(-1)
        flat[np.random.default_rng(seed + 1).choice(flat.size, len(special), replace=False)] = special
    return torch.from_numpy(y).to(dtype)


def class_indices(n, C, dtype, seed, bad=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    if bad:
        y[rng.choice(n, 3, replace=False)] = [C, 200, -1 if dtype != torch.uint8 else 255]
    return torch.from_numpy(y).to(dtype)


def logits(shape, dtype, seed, bad=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.choice([0.1, 3.0, 30.0], shape)
    flat = x.reshape(-1)
    flat[:4] = [800.0, -800.0, 0.0, -0.0]  # exp overflow / underflow in sigmoid, both signs
    if bad:
        flat[rng.choice(np.arange(4, flat.size), 4, replace=False)] = [np.nan, np.inf, -np.inf, np.nan]
    return torch.from_numpy(x).to(dtype)


def one_hot(idx, C, dtype):
    return torch.nn.functional.one_hot(idx.long(), C).to(dtype)


# ---- binary ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pdtype", PRED_DTYPES, ids=str)
def test_binary_every_label_dtype_with_bad_values(pdtype):
    """Every prediction dtype x label dtype, bad predictions and labels of every kind."""
    for i, ldtype in enumerate(LABEL_DTYPES):
        n = 300 + 37 * i
        x = probabilities((n,), 127, pdtype, seed=i, bad=True)
        y = binary_labels((n,), ldtype, seed=10 + i, bad=True)
        _, bad = check(y, x, 127, reference=ldtype != torch.bool)  # (NumPy reads bool bytes as they are)
        assert bad[0] > 0 and bad[1] > 0 and (bad[3] > 0) == (ldtype != torch.bool)


@pytest.mark.parametrize("T", [2, 127, 2049, 5000])
def test_binary_thresholds_per_dtype(T):
    """Bucket rounding per dtype at the thresholds themselves: float16/bfloat16 round the
    product to float16 up to T = 2049, not above; T = 5000 counts with global atomics."""
    for i, pdtype in enumerate(PRED_DTYPES):
        x = probabilities((700,), T, pdtype, seed=100 + i)
        y = binary_labels((700,), torch.int64, seed=200 + i)
        counts, bad = check(y, x, T)
        assert counts.sum() == 700 and not bad.any()
    if T == 5000:
        assert 5000 * 2 > K.SMEM_MAX_CELLS


def test_binary_any_shape_and_empty():
    x = probabilities((9, 7, 11), 127, torch.float32, seed=3)
    y = binary_labels((693,), torch.float32, seed=4)  # same element count, other shape
    check(y, x, 127)
    got, bad = run_kernel(torch.zeros(0), torch.zeros(0), 127)  # no rows: nothing launched
    assert not got.any() and not bad.any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16bit_buckets_every_value(dtype, monkeypatch):
    """Every 16-bit pattern in [0, 1] through the kernels' own bucket rule (py_func: plain
    Python) against the reference backend's NumPy float16 arithmetic."""
    top = 0x3C00 if dtype == torch.float16 else 0x3F80
    # device functions called by these, as plain Python (also on a GPU build)
    for name in ("_round_half", "_load_f16", "_load_bf16"):
        monkeypatch.setattr(K, name, getattr(K, name).py_func)
    bits = torch.arange(0, top + 1, dtype=torch.int32).to(torch.int16)
    v32 = bits.view(dtype).float().numpy()
    load = (K._load_half if dtype == torch.float16 else K._load_bhalf).py_func
    arr = bits.numpy()
    np.testing.assert_array_equal(np.array([load(arr, i) for i in range(arr.size)], dtype=np.float32), v32)
    code = _dtypes.code_of(dtype)
    bucket = K._bucket_16.py_func
    for T in (2, 127, 1000, 2049, 2050, 5000):
        half = T - 1 <= 2048
        got = np.array([bucket(v, np.float32(T - 1), np.float64(T - 1), half) for v in v32], dtype=np.int64)
        np.testing.assert_array_equal(got, P._reference_buckets(v32, code, T), err_msg=f"T={T}")


# ---- multi-class ------------------------------------------------------------------------------


@pytest.mark.parametrize("ldtype", [torch.uint8, torch.int32, torch.int64], ids=str)
def test_multiclass_class_indices(ldtype):
    n, C = 400, 5
    x = probabilities((n, C), 127, torch.float32, seed=7, bad=True)
    y = class_indices(n, C, ldtype, seed=8, bad=True)
    _, bad = check(y, x, 127)
    assert bad[4] == 3 and bad[0] > 0


def test_multiclass_one_hot_and_multilabel():
    n, C = 300, 4
    x = probabilities((n, C), 2049, torch.float64, seed=9, bad=True)  # C*T*2 > SMEM_MAX_CELLS
    idx = class_indices(n, C, torch.int64, seed=10)
    check(one_hot(idx, C, torch.float32), x, 2049, mode="multiclass")
    check(binary_labels((n, C), torch.uint8, seed=11, bad=True), x, 2049, mode="multilabel")
    xb = probabilities((n, 3), 127, torch.bfloat16, seed=12, bad=True)
    check(binary_labels((n, 3), torch.bool, seed=13), xb, 127, mode="multilabel")


@pytest.mark.parametrize("pdtype", PRED_DTYPES, ids=str)
def test_softmax_logits(pdtype):
    n, C = 250, 5
    x = logits((n, C), pdtype, seed=14, bad=True)
    _, bad = check(class_indices(n, C, torch.int64, seed=15, bad=True), x, 127, logits=True)
    assert bad[2] > 0 and bad[4] > 0
    check(one_hot(class_indices(n, C, torch.int32, seed=16), C, torch.uint8), x, 2049, mode="multiclass",
          logits=True)


@pytest.mark.parametrize("pdtype", PRED_DTYPES, ids=str)
def test_sigmoid_logits(pdtype):
    x = logits((600,), pdtype, seed=17, bad=True)
    _, bad = check(binary_labels((600,), torch.float64, seed=18, bad=True), x, 127, logits=True)
    assert bad[2] > 0 and bad[3] > 0
    xm = logits((150, 3), pdtype, seed=19, bad=True)
    check(binary_labels((150, 3), torch.int32, seed=20), xm, 5000, mode="multilabel", logits=True)


# ---- weights ----------------------------------------------------------------------------------


@pytest.mark.parametrize("wdtype", [torch.float32, torch.float64], ids=str)
def test_weights_array(wdtype):
    rng = np.random.default_rng(21)
    n, C = 500, 3
    w = torch.from_numpy(rng.random(n) * rng.choice([1e-3, 1.0, 100.0], n)).to(wdtype)
    w[[5, 50, 60]] = torch.tensor([-1.0, math.nan, math.inf], dtype=wdtype)
    x = probabilities((n,), 127, torch.float32, seed=22, bad=True)
    _, bad = check(binary_labels((n,), torch.bool, seed=23), x, 127, weights=w)
    assert bad[BAD_WEIGHT] == 3
    xm = probabilities((n, C), 2049, torch.float16, seed=24, bad=True)
    check(class_indices(n, C, torch.int64, seed=25, bad=True), xm, 2049, weights=w)
    xl = logits((n, C), torch.float32, seed=26, bad=True)
    check(class_indices(n, C, torch.int32, seed=27, bad=True), xl, 127, weights=w, logits=True)
    check(binary_labels((n, C), torch.float32, seed=28, bad=True), xl, 127, weights=w, mode="multilabel",
          logits=True)


def test_dyadic_weights_are_exact_everywhere():
    """Weights k/1024 <= 4: every sum is exact in float64, so the fixed-point sums equal
    the CPU's bit for bit; a scalar weight too."""
    rng = np.random.default_rng(29)
    n = 800
    w = torch.from_numpy(rng.integers(0, 4096, n) / 1024.0)
    x = probabilities((n,), 127, torch.float64, seed=30)
    y = binary_labels((n,), torch.uint8, seed=31)
    check(y, x, 127, weights=w, exact_sums=True)
    check(y, x, 2, weights=2.375, exact_sums=True)
    xs = logits((200, 4), torch.float32, seed=32)
    check(class_indices(200, 4, torch.int64, seed=33), xs, 127, weights=w[:200], logits=True, exact_sums=True)


def test_weighted_sums_are_exact_rational_sums_rounded_once():
    """Against exact rational sums per cell: carries out of the low word (fractions
    summing past 1), high words at and above 2^63 (sums of weights below 2^63), and
    weights >= 2^63 counted as bad (the CPU accepts them: the one documented difference)."""
    rng = np.random.default_rng(34)
    n, T = 600, 9
    p = rng.integers(0, 3, n) / 8.0  # three buckets (0, 1, 2 of 8)
    y = rng.integers(0, 2, n)
    w = rng.random(n) * rng.choice([1e-3, 1.0, 1e3, 1e9], n) + rng.choice([0.0, 0.75, 1 / 3], n)
    w[:4] = [1.9 * 2.0**62, 1.5 * 2.0**62, 2.0**63, 3.0 * 2.0**63]  # the last two: bad
    p[:2], y[:2] = 0.0, 1  # both big ones in one cell: a high word past 2^63
    got, bad = run_kernel(torch.from_numpy(y), torch.from_numpy(p), T, weights=torch.from_numpy(w))
    exact = {}
    for pi, yi, wi in zip(p, y, w):
        if wi >= 2.0**63:
            continue
        cell = (int(pi * (T - 1)), int(yi))
        fixed = Fraction(math.floor(Fraction(float(wi)) * 2**64), 2**64)  # bits below 2^-64 are dropped
        exact[cell] = exact.get(cell, Fraction(0)) + fixed
    want = np.zeros((1, T, 2))
    for (b, pos), s in exact.items():
        want[0, b, pos] = float(s)  # correctly rounded
    np.testing.assert_array_equal(got, want)
    assert bad.tolist() == [0, 0, 0, 0, 0, 2, 0, 0]
    _, nbad = run_cpu("native", torch.from_numpy(y), torch.from_numpy(p), T, weights=torch.from_numpy(w))
    assert nbad[BAD_WEIGHT] == 0


def test_fixed_point_rounding_cases():
    """The 128-bit -> float64 conversion (py_func) on ties, sticky bits and full words."""
    f = K._fixed_to_f64.py_func
    rng = np.random.default_rng(35)
    cases = [(0, 1), (0, 2**64 - 1), (1, 0), (2**64 - 1, 2**64 - 1), (2**63, 0), (2**63, 1),
             ((1 << 53) | 1, 0), ((1 << 53) | 1, 1), ((1 << 53) | 3, 0), ((1 << 52) | 1, 2**63),
             ((1 << 52) | 1, 2**63 + 1), (1, 2**11 + 2**10)]
    cases += [(int(h), int(lo)) for h, lo in zip(rng.integers(0, 2**63, 300, dtype=np.uint64) >> rng.integers(
        0, 64, 300).astype(np.uint64), rng.integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2))]
    for hi, lo in cases:
        want = float(Fraction(hi * 2**64 + lo, 2**64))
        got = f(np.uint64(hi), np.uint64(lo))
        assert got == want, (hi, lo, got, want)


# ---- state: added to, never overwritten; deterministic ------------------------------------------


def test_accumulates_into_the_state():
    rng = np.random.default_rng(36)
    n, C, T = 300, 3, 127
    x = probabilities((n, C), T, torch.float32, seed=37, bad=True)
    y = class_indices(n, C, torch.int64, seed=38, bad=True)
    once, bad1 = run_kernel(y, x, T)
    garbage = (rng.integers(-10**6, 10**6, (C, T, 2)), rng.integers(0, 1000, 8))
    st = new_state(C, T, False, garbage)
    run_kernel(y, x, T, state=st)
    twice, bad2 = run_kernel(y, x, T, state=st)
    np.testing.assert_array_equal(twice, garbage[0] + 2 * once)
    np.testing.assert_array_equal(bad2, garbage[1] + 2 * bad1)

    w = torch.from_numpy(rng.random(n) * 5)
    wonce, _ = run_kernel(y, x, T, weights=w)
    gsum = rng.standard_normal((C, T, 2)) * 1e3
    st = new_state(C, T, True, (gsum, garbage[1]))
    got, bad = run_kernel(y, x, T, weights=w, state=st)
    np.testing.assert_array_equal(got, gsum + wonce)  # one float64 add per touched cell; others kept
    np.testing.assert_array_equal(bad, garbage[1] + bad1)


def test_weighted_sums_are_deterministic(monkeypatch):
    """Bit-for-bit the same run to run and whatever the grid (order of the atomics)."""
    rng = np.random.default_rng(39)
    n, C = 700, 3
    w = torch.from_numpy(rng.random(n) * rng.choice([1e-3, 1.0, 1e6], n) + 0.1)
    x = probabilities((n, C), 127, torch.float64, seed=40)
    y = class_indices(n, C, torch.int64, seed=41)
    first, _ = run_kernel(y, x, 127, weights=w)
    second, _ = run_kernel(y, x, 127, weights=w)
    monkeypatch.setattr(K, "MAX_BLOCKS", 1)  # one block strides over every chunk
    third, _ = run_kernel(y, x, 127, weights=w)
    assert first.tobytes() == second.tobytes() == third.tobytes()
    want, _ = run_cpu("native", y, x, 127, weights=w)
    np.testing.assert_allclose(first, want, rtol=2.3e-16 * n, atol=0)


def test_grid_stride_and_global_atomics(monkeypatch):
    x = probabilities((1500,), 127, torch.float32, seed=42, bad=True)
    y = binary_labels((1500,), torch.int64, seed=43)
    monkeypatch.setattr(K, "MAX_BLOCKS", 2)  # 3 chunks on 2 blocks
    check(y, x, 127)
    monkeypatch.setattr(K, "SMEM_MAX_CELLS", 4)  # no shared counters
    check(y, x, 127)
    xs = logits((600, 3), torch.float32, seed=44, bad=True)
    check(class_indices(600, 3, torch.int64, seed=45), xs, 127, logits=True)


def test_bad_value_precedence():
    """Row-level checks first (weight, class index, softmax logits), then per element the
    label, then the prediction: each bad row or element is counted once, by its first
    failing check (as the CPU's row loop)."""
    nan, inf = math.nan, math.inf
    x = torch.tensor([[nan, 0.5, 2.0], [nan, 0.5, 2.0], [0.2, nan, -1.0], [0.1, 0.2, 0.3]])
    idx = torch.tensor([-1, 9, 1, 2])
    w = torch.tensor([nan, 1.0, 1.0, -2.0])
    got, bad = check(idx, x, 127, weights=w)
    assert bad.tolist() == [1, 1, 0, 0, 1, 2, 0, 0]
    y = torch.tensor([[2.0, 0.0, 1.0], [0.0, 5.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    _, bad = check(y, x, 127, mode="multilabel")
    assert bad.tolist() == [2, 3, 0, 2, 0, 0, 0, 0]
    xl = torch.tensor([[nan, inf, 1.0], [0.0, 1.0, 2.0], [3.0, -inf, 0.0], [1.0, 1.0, 1.0]])
    _, bad = check(y, xl, 127, mode="multiclass", logits=True)
    assert bad.tolist() == [0, 0, 3, 1, 0, 0, 0, 0]  # rows 0 and 2: logits (labels unread); row 1: label
    _, bad = check(y, xl, 127, mode="multilabel", logits=True)
    assert bad.tolist() == [0, 0, 2, 2, 0, 0, 0, 0]  # sigmoid: per element, label first


@pytest.mark.skipif(not K.SIMULATOR, reason="checks the simulator build's import")
def test_import_needs_no_gpu():
    # Without the simulator and without a GPU, importing the module must still work:
    # kernels are built and compiled on first use only.
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    code = "import tbfast.numba_kernels.pr_curve_numba_cuda as K; assert not K.SIMULATOR and not K._KERNELS"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
