"""The Numba CUDA histogram kernels (tbfast/numba_kernels/histogram_numba_cuda.py) against
np.histogram on float64 and the bisect oracle.

They run under the Numba CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1
before numba is imported), or on a GPU with TBFAST_TEST_NUMBA_CUDA=device. The simulator
runs every CUDA thread as a Python thread, so shapes stay at a few thousand elements;
every output is pre-filled with garbage so that anything the kernels leave unwritten
shows up."""

import importlib
import math
import os
import subprocess
import sys
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

pytest.importorskip("numba.cuda")

from tbfast import _dtypes  # noqa: E402

from oracle_histogram import counts_edges  # noqa: E402

K = importlib.import_module("tbfast.numba_kernels.histogram_numba_cuda")

if not K.SIMULATOR:
    from numba import cuda as _cuda

    if not (torch.cuda.is_available() and _cuda.is_available()):
        pytest.skip("neither the Numba CUDA simulator nor a CUDA GPU", allow_module_level=True)
DEVICE = "cpu" if K.SIMULATOR else "cuda"

EDGES, UNIFORM, UNIFORM_AUTO = 0, 1, 2
USER_EDGES = [-3.0, -1.0, 0.0, 0.0, 2.5, 100.0]
RANGE = (-2.5, 3.0)
TORCH_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                torch.bfloat16, torch.float32, torch.float64, torch.uint16, torch.uint32, torch.uint64]
# One length per dtype: single elements, block and chunk (1024) boundaries and their
# neighbours, lengths that leave a chunk partly filled.
LENGTHS = [1, 5, 127, 129, 1023, 1024, 1025, 300, 1100, 700, 64, 999, 333]


def default_edges():
    return importlib.import_module("tbfast.histogram").default_edges()


def as_float64(t):
    """Exactly the values a tensor holds, as float64 NumPy."""
    t = t.cpu()
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return t.numpy().astype(np.float64)
    return t.double().numpy()


def sample(dtype, n, seed):
    rng = np.random.default_rng(seed)
    if dtype == torch.bool:
        return torch.from_numpy(rng.integers(0, 2, n).astype(bool))
    if dtype.is_floating_point:
        x = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 50.0], n)
        # values on the user edges, the range ends, signed zero and non-finite values
        special = np.array(USER_EDGES + list(RANGE) + [-0.0, 1e-12, np.nan, np.inf, -np.inf, np.nan])
        k = min(n, special.size)
        x[rng.choice(n, k, replace=False)] = special[:k]
        return torch.from_numpy(x).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -200), min(info.max, 300)
    t = torch.from_numpy(rng.integers(lo, hi, n, endpoint=True)).to(dtype)
    if dtype == torch.uint64 and n > 3:  # float64 rounding of huge unsigned values
        t[:3] = torch.tensor([2**64 - 1, 2**63 + 1025, 2**53 + 1], dtype=torch.uint64)
    return t


def run_job(tensors, mode, num_bins, edges=None, ranges=None, ranges_on_device=False):
    """Build a job the way the op does, run the kernels, return NumPy outputs.
    ranges_on_device: the ranges as a float64 tensor on the device, as group= passes them
    (reduced over the ranks; the kernels read them there, never the host)."""
    tensors = [t.to(DEVICE) for t in tensors]
    T = len(tensors)
    descs = [NS(numel=t.numel(), dtype=_dtypes.code_of(t.dtype), flat_owner=(lambda t=t: t.reshape(-1)))
             for t in tensors]
    out = NS(counts=torch.full((T, num_bins), -7, dtype=torch.int64, device=DEVICE),
             stats=torch.full((T, 4), math.nan, dtype=torch.float64, device=DEVICE),
             nonfinite=torch.full((T, 3), -7, dtype=torch.int64, device=DEVICE))
    spec = NS(mode=mode, num_bins=num_bins,
              edges=None if edges is None else np.asarray(edges, dtype=np.float64),
              ranges=None if ranges is None else np.asarray(ranges, dtype=np.float64).reshape(T, 2))
    if ranges_on_device:
        spec.ranges = torch.from_numpy(spec.ranges).to(DEVICE)
    stream = torch.cuda.current_stream().cuda_stream if DEVICE == "cuda" else None
    assert K.run(NS(descs=descs, spec=spec, out=out, stream=stream)) is out
    return out.counts.cpu().numpy(), out.stats.cpu().numpy(), out.nonfinite.cpu().numpy()


def auto_range(mn, mx):
    if not mn <= mx:
        return 0.0, 1.0
    return (mn - 0.5, mx + 0.5) if mn == mx else (mn, mx)


def check_stats(stats, nonfinite, x64):
    """min/max exact, sums within a same-precision bound (as tests/test_histogram.py)."""
    fin = x64[np.isfinite(x64)]
    mn, mx, s, q = stats
    if fin.size:
        assert mn == fin.min() and mx == fin.max()
    else:
        assert mn == math.inf and mx == -math.inf
    with np.errstate(over="ignore"):
        for got, ref, mag in ((s, fin.sum(), np.abs(fin).sum()), (q, fin.dot(fin), np.square(fin).sum())):
            if not np.isfinite(ref):
                assert got == ref
            else:
                assert abs(got - ref) <= 2.3e-16 * max(1, fin.size) * (mag + 1)
    assert tuple(nonfinite) == (int(np.isnan(x64).sum()), int((x64 == np.inf).sum()), int((x64 == -np.inf).sum()))


def check_job(tensors, mode, num_bins, edges=None, ranges=None):
    counts, stats, nonfinite = run_job(tensors, mode, num_bins, edges, ranges)
    for t, x in enumerate(tensors):
        x64 = as_float64(x)
        fin = x64[np.isfinite(x64)]
        if mode == EDGES:
            ref, _ = np.histogram(fin, bins=edges)
        elif mode == UNIFORM:
            ref, _ = np.histogram(fin, bins=num_bins, range=tuple(ranges[t]))
        else:
            ref, limits = np.histogram(fin, bins=num_bins)
            # the op's limits, np.linspace over auto_range(device min, max), are NumPy's
            np.testing.assert_array_equal(np.linspace(*auto_range(stats[t, 0], stats[t, 1]), num_bins + 1), limits)
        np.testing.assert_array_equal(counts[t], ref, err_msg=f"tensor {t} ({x.dtype}, {x.numel()} elements)")
        check_stats(stats[t], nonfinite[t], x64)
    return counts, stats, nonfinite


MODES = {
    "tensorflow": dict(mode=EDGES, num_bins=1548, edges="tensorflow"),
    "edges": dict(mode=EDGES, num_bins=len(USER_EDGES) - 1, edges=USER_EDGES),
    "int": dict(mode=UNIFORM_AUTO, num_bins=17),
    "ranges": dict(mode=UNIFORM, num_bins=17, ranges="per-tensor"),
}


@pytest.mark.parametrize("bins", list(MODES))
def test_every_dtype_in_one_job(bins):
    """13 tensors, one per dtype code, of 13 different lengths, in one job per bins mode."""
    tensors = [sample(dt, n, seed) for seed, (dt, n) in enumerate(zip(TORCH_DTYPES, LENGTHS))]
    m = dict(MODES[bins])
    if m.get("edges") == "tensorflow":
        m["edges"] = default_edges()
    if m.get("ranges") == "per-tensor":
        m["ranges"] = [(0.0, 1.0) if x.dtype == torch.bool else RANGE if x.dtype.is_floating_point else (-150, 250)
                       for x in tensors]
    check_job(tensors, **m)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # (1e300)**2 in the simulator
def test_values_on_edges_and_the_closed_last_bin():
    e = default_edges()
    pick = e[::9]  # every 9th default edge (both signs, zero), and their neighbours
    outer = [e[0], e[-1], np.nextafter(e[0], -np.inf), np.nextafter(e[-1], np.inf), 1e300, -1e300, 5e-324, -0.0]
    x = np.concatenate([pick, np.nextafter(pick, np.inf), np.nextafter(pick, -np.inf), outer,
                        [np.nan, np.inf, -np.inf, np.inf]])
    counts, _, nonfinite = check_job([torch.from_numpy(x)], EDGES, e.size - 1, edges=e)
    np.testing.assert_array_equal(counts[0], counts_edges(x, e.tolist()))
    fin = x[np.isfinite(x)]
    assert counts[0, -1] >= 1 and counts[0].sum() == ((fin >= e[0]) & (fin <= e[-1])).sum()
    assert nonfinite[0].tolist() == [1, 2, 1]

    user = np.array(USER_EDGES)
    y = np.concatenate([user, np.nextafter(user, np.inf), np.nextafter(user, -np.inf), [np.nan, np.inf]])
    ys = [torch.from_numpy(y), torch.from_numpy(y).float(), torch.tensor([100.0] * 5 + [-3.0], dtype=torch.bfloat16)]
    counts, _, _ = check_job(ys, EDGES, user.size - 1, edges=user)
    np.testing.assert_array_equal(counts[0], counts_edges(y, USER_EDGES))
    assert counts[2].tolist() == [1, 0, 0, 0, 5]  # the last edge itself lands in the closed last bin

    # uniform bins: values exactly on np.linspace edges, both range ends
    lim = np.linspace(*RANGE, 18)
    z = np.concatenate([lim, np.nextafter(lim, np.inf), np.nextafter(lim, -np.inf)])
    check_job([torch.from_numpy(z)], UNIFORM, 17, ranges=[RANGE])


def test_constant_and_no_finite_values():
    const = torch.full((300,), 7.0)
    none = torch.tensor([math.nan, math.inf, -math.inf, math.nan], dtype=torch.float16)
    counts, stats, nonfinite = check_job([const, none, torch.full((5,), -2, dtype=torch.int32)], UNIFORM_AUTO, 4)
    assert counts[0].tolist() == [0, 0, 300, 0]  # [6.5, 7.5] split in 4: 7.0 opens the third bin
    assert counts[1].tolist() == [0, 0, 0, 0] and nonfinite[1].tolist() == [2, 1, 1]
    assert stats[1].tolist() == [math.inf, -math.inf, 0.0, 0.0]
    counts, stats, _ = check_job([none, const], EDGES, 1548, edges=default_edges())
    assert counts[0].sum() == 0 and counts[1].sum() == 300


def test_grid_stride_and_deterministic_sums(monkeypatch):
    x = torch.from_numpy(np.random.default_rng(5).standard_normal(2500) * 1e3)
    y = torch.from_numpy(np.random.default_rng(6).standard_normal(1500)).float()
    e = default_edges()
    first = check_job([x, y], EDGES, e.size - 1, edges=e)
    second = run_job([x, y], EDGES, e.size - 1, edges=e)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)  # bit-for-bit, sums included
    # fewer blocks than chunks: block 0 takes chunks 0 and 2 (stats and count kernels)
    monkeypatch.setattr(K, "MAX_BLOCKS", 2)
    check_job([x, y], UNIFORM_AUTO, 17)


def test_global_atomics_above_the_shared_memory_limit(monkeypatch):
    x = sample(torch.float32, 900, 3)
    counts, _, _ = check_job([x], UNIFORM, 9000, ranges=[RANGE])  # > SMEM_MAX_BINS
    assert 9000 > K.SMEM_MAX_BINS and counts.sum() > 0
    monkeypatch.setattr(K, "SMEM_MAX_BINS", 4)
    check_job([x, sample(torch.bfloat16, 200, 4)], EDGES, 1548, edges=default_edges())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16bit_float_bits_decode_exactly(dtype):
    # Every bit pattern through the kernels' own loader source (py_func: plain Python),
    # against torch's exact widening; NaN patterns must decode to NaN.
    load = (K._load_f16 if dtype == torch.float16 else K._load_bf16).py_func
    bits = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16)
    ref = bits.view(dtype).double().numpy()
    arr = bits.numpy()
    got = np.array([load(arr, i) for i in range(arr.size)], dtype=np.float64)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.int64), ref[~nan].view(np.int64))  # -0.0 included


@pytest.mark.skipif(not K.SIMULATOR, reason="checks the simulator build's import")
def test_import_needs_no_gpu():
    # Without the simulator and without a GPU, importing the module must still work:
    # kernels are built and compiled on first use only.
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    code = "import tbfast.numba_kernels.histogram_numba_cuda as K; assert not K.SIMULATOR and not K._KERNELS"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_uniform_ranges_given_on_the_device():
    # group= with bins=int hands the kernels the global ranges as a device tensor [T, 2]
    g = torch.Generator().manual_seed(11)
    xs = [torch.randn(3000, generator=g), torch.randn(70, generator=g).double() * 5, torch.arange(-40, 90)]
    ranges = [(-1.5, 2.0), (-4.0, 4.0), (-50.0, 100.0)]
    want = run_job(xs, UNIFORM, 23, ranges=ranges)
    got = run_job(xs, UNIFORM, 23, ranges=ranges, ranges_on_device=True)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    for t, x in enumerate(xs):
        np.testing.assert_array_equal(got[0][t], np.histogram(as_float64(x), bins=23, range=ranges[t])[0])
