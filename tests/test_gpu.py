"""GPU-only checks of the device contract (skipped per test without a CUDA device; run by
scripts/gpu-check.sh on a GPU machine): parity of the CUDA backends with the CPU native
backend on a battery, determinism, many tensors in one call, streams, no host sync in
any writer method (torch.cuda.set_sync_debug_mode("error")), and data errors surfacing
on the writer's next call."""

import contextlib
import importlib

import numpy as np
import pytest
import torch

import tbfast
from conftest import free_port, require_backend, values_by_tag

H = importlib.import_module("tbfast.histogram")

CUDA_BACKENDS = ("native", "numba", "reference")
DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64]
BINS = ["tensorflow", 17, [-3.0, -1.0, 0.0, 0.0, 2.5, 100.0]]


def battery(seed=0):
    """Named CPU tensors of every dtype, odd sizes, non-finite values, values on the
    default edges, constant and all-non-finite tensors."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, dt in enumerate(DTYPES):
        n = int(rng.integers(1, 70000)) if i % 3 else 65537
        if dt == torch.bool:
            t = torch.from_numpy(rng.integers(0, 2, n).astype(bool))
        elif dt.is_floating_point:
            x = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 50.0], n)
            x[:: 97] = np.nan
            x[1:: 89] = np.inf
            x[2:: 83] = -np.inf
            t = torch.from_numpy(x).to(dt)
        else:
            t = torch.from_numpy(rng.integers(-100 if dt != torch.uint8 else 0, 100, n)).to(dt)
        out[f"t{i}_{str(dt)[6:]}"] = t
    e = H.default_edges()
    out["on_edges"] = torch.from_numpy(np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf)]))
    out["constant"] = torch.full((1000,), 0.25, dtype=torch.float32)
    out["zeros_big"] = torch.zeros((1 << 20) + 3, dtype=torch.bfloat16)
    out["all_nan"] = torch.full((10,), float("nan"))
    return out


def _need_cuda(backend):
    require_backend("histogram", backend, "cuda")


@pytest.mark.parametrize("bins", BINS, ids=["tf", "int", "edges"])
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_cuda_equals_cpu_native_on_the_battery(backend, bins):
    _need_cuda(backend)
    require_backend("histogram", "native", "cpu")
    named = battery()
    if bins == 17:
        named.pop("all_nan")  # fine too, but its [0, 1] range is tested on the CPU
    cpu = tbfast.histograms(named, bins=bins, backend="native")
    gpu = tbfast.histograms({k: v.cuda() for k, v in named.items()}, bins=bins, backend=backend)
    for name in named:
        c_counts, c_limits, c_stats, c_nf = cpu[name].host()
        g_counts, g_limits, g_stats, g_nf = gpu[name].host()
        np.testing.assert_array_equal(g_counts, c_counts, err_msg=name)
        np.testing.assert_array_equal(g_limits, c_limits, err_msg=name)
        np.testing.assert_array_equal(g_nf, c_nf, err_msg=name)
        np.testing.assert_array_equal(g_stats[:2], c_stats[:2], err_msg=name)  # min/max exact
        np.testing.assert_allclose(g_stats[2:], c_stats[2:], rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_cuda_results_are_deterministic(backend):
    _need_cuda(backend)
    x = torch.randn(3 << 20, device="cuda") * 100
    a = tbfast.histogram(x, bins=64, backend=backend).host()
    for _ in range(3):
        b = tbfast.histogram(x, bins=64, backend=backend).host()
        for u, v in zip(a, b):
            assert np.array_equal(u, v)  # sums bit for bit


def test_many_tensors_of_mixed_dtypes_in_one_call():
    _need_cuda("native")
    rng = np.random.default_rng(5)
    dts = [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int32]
    named = {f"p{i}": torch.from_numpy(rng.standard_normal(int(rng.integers(1, 200000)))).to(dts[i % 5])
             for i in range(1000)}
    cpu = tbfast.histograms(named, backend="native")
    gpu = tbfast.histograms({k: v.cuda() for k, v in named.items()})
    assert len({id(r.batch) for r in gpu.values()}) == 1  # one batch, one host copy
    for name in named:
        np.testing.assert_array_equal(gpu[name].numpy()[0], cpu[name].numpy()[0], err_msg=name)


def test_runs_on_the_callers_stream_and_an_explicit_one():
    _need_cuda("native")
    x = torch.randn(1 << 22, device="cuda")
    ref = tbfast.histogram(x.cpu()).numpy()[0]
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = x * 1.0  # made on s: only a launch on s sees it finished
        r = tbfast.histogram(y)
    np.testing.assert_array_equal(r.numpy()[0], ref)
    r2 = tbfast.histogram(x, stream=s)  # stream= object
    np.testing.assert_array_equal(r2.numpy()[0], ref)
    r3 = tbfast.histogram(x, stream=s.cuda_stream)  # raw handle
    np.testing.assert_array_equal(r3.numpy()[0], ref)


@contextlib.contextmanager
def no_host_sync():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_writer_methods_never_sync(tmp_path, monkeypatch, backend):
    _need_cuda(backend)
    monkeypatch.setenv("TBFAST_BACKEND", backend)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).cuda()
    model(torch.randn(4, 64, device="cuda")).sum().backward()
    x = torch.randn(1 << 20, device="cuda")
    w = tbfast.SummaryWriter(str(tmp_path))
    for bins in ("tensorflow", 30):  # int bins: the range is read on the device
        w.add_histogram("warmup", x, 0, bins=bins)  # device constants uploaded once
    w.flush()
    with no_host_sync():
        for step, bins in enumerate(("tensorflow", 30, [-1.0, 0.0, 1.0])):
            w.add_histogram("x", x, step, bins=bins)
            w.add_histograms({"a": x[:1000], "b": x.bfloat16()}, step, bins=bins)
            w.add_module_histograms(model, step, bins=bins)
    w.close()
    tags = values_by_tag(tmp_path)
    assert len(tags["x"]) == 3 and "parameters/0.weight" in tags and "gradients/2.bias" in tags


def test_too_many_bins_on_cuda_surfaces_on_the_next_call(tmp_path):
    _need_cuda("native")
    w = tbfast.SummaryWriter(str(tmp_path))
    w.add_histogram("narrow", torch.tensor([4503599627370498.0], dtype=torch.float64, device="cuda"), 0, bins=1)
    with pytest.raises(ValueError, match="narrow.*too many bins"):
        w.flush()
    w.add_scalar("after", 1.0, 0)  # the writer keeps working
    w.close()


# ---- PR curves and image grids on the GPU -------------------------------------------------

PR_MODES = [("binary", False), ("multiclass", False), ("multiclass", True), ("multilabel", True)]


def _pr_data(mode, logits, n=20000, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    if mode == "binary":
        return torch.randint(0, 2, (n,), generator=g).bool(), torch.rand(n, generator=g), torch.rand(n, generator=g)
    preds = torch.randn(n, c, generator=g) * 2 if logits else torch.rand(n, c, generator=g)
    labels = torch.randint(0, c, (n,), generator=g) if mode == "multiclass" else torch.randint(0, 2, (n, c),
                                                                                                generator=g)
    return labels, preds, torch.rand(n, generator=g)


@pytest.mark.parametrize("mode,logits", PR_MODES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pred_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_pr_curve_cuda_equals_cpu_native(backend, pred_dtype, weighted, mode, logits):
    require_backend("pr_curve", backend, "cuda")
    labels, preds, weights = _pr_data(mode, logits)
    preds = preds.to(pred_dtype)
    w = weights if weighted else None
    for num_thresholds in (2, 127, 10001):
        cpu = tbfast.pr_curve(labels, preds, num_thresholds, w, mode=mode, logits=logits, backend="native")
        gpu = tbfast.pr_curve(labels.cuda(), preds.cuda(), num_thresholds, None if w is None else w.cuda(),
                              mode=mode, logits=logits, backend=backend)
        if weighted:
            np.testing.assert_allclose(gpu.data, cpu.data, rtol=1e-12, atol=1e-9)
            again = tbfast.pr_curve(labels.cuda(), preds.cuda(), num_thresholds, w.cuda(), mode=mode, logits=logits,
                                    backend=backend)
            if backend != "reference":  # the kernels are deterministic; the torch reference uses float atomics
                np.testing.assert_array_equal(again.data, gpu.data)
        else:
            np.testing.assert_array_equal(gpu.data, cpu.data)


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_pr_bad_values_counted_on_the_device(backend):
    require_backend("pr_curve", backend, "cuda")
    labels = torch.tensor([0, 1, 2, 1, 0], device="cuda")
    preds = torch.tensor([0.5, float("nan"), 0.2, 1.5, -0.1], device="cuda")
    curve = tbfast.pr_curve(labels, preds, 11, backend=backend)  # no error yet: nothing was read
    with pytest.raises(tbfast.PRCurveValueError) as err:
        curve.data
    cpu = tbfast.PRCurveAccumulator(11, backend="native")
    cpu.update(preds.cpu(), labels.cpu())
    with pytest.raises(tbfast.PRCurveValueError) as cpu_err:
        cpu.compute()
    assert err.value.counts == cpu_err.value.counts


IMAGE_DTYPES = [torch.uint8, torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.bool, torch.int16]


@pytest.mark.parametrize("dtype", IMAGE_DTYPES, ids=str)
@pytest.mark.parametrize("norm", ["none", "range", "each", "global"])
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_image_grid_cuda_equals_cpu_native(backend, norm, dtype):
    require_backend("image_grid", backend, "cuda")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(7, 3, 17, 19, generator=g) * 4 - 1
    if dtype == torch.uint8:
        x = (x * 60).clamp(0, 255).to(torch.uint8)
    else:
        x = x.to(dtype)
    if dtype.is_floating_point:
        x[1, 0, 2, 3] = float("nan")
    kw = dict(nrow=3, padding=2, pad_value=0.5 if dtype.is_floating_point else 1, normalize=norm != "none",
              scale_each=norm == "each", value_range=(-1.0, 2.0) if norm == "range" else None)
    want = tbfast.image_grid(x, **kw)
    from tbfast import image as image_mod
    plan = image_mod.plan_grid(x.cuda(), **kw)
    got = image_mod.run_plan(plan, backend=backend)
    assert got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy(), want.numpy())


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_pr_and_image_writer_methods_never_sync(tmp_path, monkeypatch, backend):
    require_backend("pr_curve", backend, "cuda")
    monkeypatch.setenv("TBFAST_BACKEND", backend)
    labels, preds, _ = _pr_data("multiclass", True, n=5000)
    labels, preds = labels.cuda(), preds.cuda()
    imgs = torch.rand(8, 3, 32, 32, device="cuda")
    w = tbfast.SummaryWriter(str(tmp_path))
    acc = tbfast.PRCurveAccumulator(201, num_classes=7, logits=True)
    acc.update(preds, labels)  # warm-up: device constants, kernels compiled
    w.add_pr_curves("warm", labels, preds, 0, logits=True)
    w.flush()
    with no_host_sync():
        for step in range(2):
            w.add_pr_curve("bin", (labels == 0).long(), preds.softmax(1)[:, 0], step)
            w.add_pr_curves("multi", labels, preds, step, num_thresholds=201, logits=True)
            acc.update(preds, labels)
            w.add_pr_accumulator("acc", acc, step)
            w.add_image("img", imgs[0], step)
            w.add_images("imgs", imgs, step)
            w.add_image_grid("grid", imgs, step, normalize=True)
    w.close()
    tags = values_by_tag(tmp_path)
    assert {"bin", "multi/0", "acc/6", "img", "imgs", "grid"} <= set(tags)


# ---- watch() and the group= reductions on the GPU (NCCL) ---------------------------------


def test_watch_on_cuda_never_syncs(tmp_path):
    _need_cuda("native")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).cuda()
    x = torch.randn(16, 64, device="cuda")
    w = tbfast.SummaryWriter(str(tmp_path))
    w.add_module_histograms(model, 0)  # warm-up: device constants uploaded once
    w.flush()
    watch = tbfast.watch(model, w, log="all", log_freq=2)
    with no_host_sync():
        for _ in range(4):
            model(x).sum().backward()
    watch.remove()
    w.close()
    tags = values_by_tag(tmp_path)
    assert [s for s, _ in tags["gradients/2.bias"]] == [2, 4]
    assert [s for s, _ in tags["parameters/0.weight"]][-2:] == [2, 4]


def _rows(results):
    return {n: tuple(np.asarray(a).tolist() for a in r.host()) + (r.num,) for n, r in results.items()}


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_group_reductions_never_sync_and_equal_one_process(tmp_path, device, world):
    """DTensor shards, plain parts and sharded PR-curve accumulators (ranks with weighted,
    unweighted and no batches) reduced over NCCL under set_sync_debug_mode("error") (on CPU tensors
    over gloo: the same cases without a GPU), equal to the CPU native backend on the whole
    data in one process."""
    import os
    import pickle
    import subprocess
    import sys

    require_backend("histogram", "native", "cpu")
    import torch.distributed as dist

    if device == "cuda":
        _need_cuda("native")
        if torch.cuda.device_count() < world:
            pytest.skip(f"needs {world} GPUs, {torch.cuda.device_count()} visible")
        if not dist.is_nccl_available():
            pytest.skip("this torch has no NCCL")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, os.path.join(here, "gpu_dist_worker.py"), device, str(world), str(free_port()),
                           str(tmp_path)], capture_output=True, text=True, timeout=240)
    errors = "".join(p.read_text() for p in tmp_path.glob("rank*.err"))
    assert proc.returncode == 0 and not errors, errors or proc.stderr[-4000:]
    sys.path.insert(0, here)
    import gpu_dist_worker as worker

    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(world)]
    full = ranks[0]["full"]
    for bins in worker.BINS:
        want = _rows(tbfast.histograms(full, bins=bins, backend="native"))
        for r in ranks:
            got = r["hist"][str(bins)]
            for name, row in want.items():
                g = got[name]
                assert g[0] == row[0] and g[1] == row[1] and g[3] == row[3] and g[4] == row[4], (bins, name)
                assert g[2][:2] == row[2][:2], (bins, name)  # min/max exact
                np.testing.assert_allclose(g[2][2:], row[2][2:], rtol=1e-12, err_msg=f"{bins} {name}")
    parts = torch.cat([torch.arange(r * 10, r * 10 + 10, dtype=torch.float32) for r in range(world)])
    assert ranks[0]["hist"]["parts"]["part"][0] == _rows(tbfast.histograms({"part": parts}, bins=5))["part"][0]
    (pred, labels, weights), _ = worker.pr_data(0, 1)
    acc = tbfast.PRCurveAccumulator(num_thresholds=201, num_classes=5, backend="native")
    acc.update(pred, labels)
    wacc = tbfast.PRCurveAccumulator(num_thresholds=33, num_classes=5, backend="native")
    for r in range(world):
        _, (p, lab, w) = worker.pr_data(r, world)
        if r != world - 1:
            wacc.update(p, lab, w)
        elif world > 1:
            wacc.update(p, lab)
    for r in ranks:
        np.testing.assert_array_equal(r["pr"][0], acc.snapshot().numpy())
        np.testing.assert_allclose(r["pr"][1], wacc.snapshot().numpy(), rtol=1e-12, atol=1e-9)
