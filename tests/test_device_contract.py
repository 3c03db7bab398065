"""The device contract (tbfast/_device.py, tbfast/backends.py, tbfast/_tensor.py): one
input descriptor, a static op registry with one dispatch, streams, packed results with
one host copy, the writer packing on its own thread, sync-free reference code (proved on
meta tensors, which cannot be read from the host), and hardened native bindings."""

import importlib
import threading
import time

import numpy as np
import pytest
import torch

import tbfast
from tbfast import _device, _dtypes, _native, _tensor, backends

H = importlib.import_module("tbfast.histogram")


# ---- registry and dispatch ------------------------------------------------------------------


def test_every_registered_implementation_resolves():
    for op, impls in backends.OPS.items():
        for (backend, device), where in impls.items():
            assert backend in backends.BACKENDS and device in backends.DEVICES, (op, backend, device)
            assert callable(backends.implementation(op, backend, device)), where
    rows = backends.table()
    assert {r[0] for r in rows} == set(backends.OPS)


def test_registry_is_static(tmp_path):
    import subprocess
    import sys

    code = ("import sys, tbfast.backends as b\n"
            "sys.modules.pop('tbfast.pr_curve', None)\n"
            "rows = b.table()\n"
            "assert 'tbfast.pr_curve' not in sys.modules, 'table() imported an op module'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("forced", backends.BACKENDS)
def test_forcing_a_backend_never_breaks_ops_it_does_not_claim(monkeypatch, tmp_path, forced):
    # PNG is a codec, not an op: TBFAST_BACKEND=numba used to fail every image method
    monkeypatch.setenv(backends.ENV_VAR, forced)
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        w.add_images("imgs", torch.rand(3, 3, 8, 8))
        w.add_histogram("h", torch.randn(100))
        w.add_pr_curve("pr", torch.randint(0, 2, (50,)), torch.rand(50))


# ---- the descriptor ---------------------------------------------------------------------


def test_descriptor_layouts():
    t = torch.randn(4, 6)
    d = _tensor.describe(t.t(), layout="strided")
    assert d.ptr == t.data_ptr() and d.shape == (6, 4) and d.strides == (1, 6)
    assert _tensor.describe(t.t(), layout="flat").ptr == t.data_ptr()  # dense permutation: in place
    r = _tensor.describe(t.t(), layout="rowmajor")  # order matters: copied
    assert r.ptr != t.data_ptr() and r.owner.is_contiguous()


def test_descriptor_rejects_what_it_cannot_read():
    t = torch.randn(10)
    t.untyped_storage().resize_(0)
    with pytest.raises(ValueError, match="storage"):
        tbfast.histogram(t)
    with pytest.raises(ValueError, match="meta tensor"):
        tbfast.histogram(torch.empty(3, device="meta"))
    nested = torch.nested.nested_tensor([torch.randn(2), torch.randn(3)])
    with pytest.raises(TypeError, match="nested"):
        tbfast.histogram(nested)

    class Wrapper(torch.Tensor):
        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    w = torch.Tensor._make_subclass(Wrapper, torch.randn(4))
    with pytest.raises(TypeError, match="Wrapper"):
        tbfast.histogram(w)
    # a plain subclass without its own dispatch is fine; so is a Parameter
    assert tbfast.histogram(torch.nn.Parameter(torch.randn(5))).num == 5


# ---- streams ----------------------------------------------------------------------------


class _ProtocolStream:
    def __cuda_stream__(self):
        return (0, 0x1234)


class _TorchLikeStream:
    cuda_stream = 0x5678


def test_stream_argument_forms():
    assert _device.resolve_stream(_ProtocolStream(), 0) == 0x1234
    assert _device.resolve_stream(_TorchLikeStream(), 0) == 0x5678
    assert _device.resolve_stream(77, 0) == 77
    assert _device.resolve_stream(0, 0) == 0  # the NULL stream only when asked for explicitly
    with pytest.raises(TypeError):
        _device.resolve_stream(True, 0)
    with pytest.raises(TypeError):
        _device.resolve_stream("s", 0)
    with pytest.raises(ValueError):
        _device.resolve_stream(-1, 0)


def test_default_stream_is_the_current_torch_stream():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        assert _device.resolve_stream(None, torch.cuda.current_device()) == s.cuda_stream


# ---- sync-free reference: meta tensors cannot be read from the host ---------------------------


def _meta_job(tensors, bins):
    descs = [_tensor.describe(t, allow_meta=True) for t in tensors]
    spec = H._resolve_bins(bins, descs)
    return H.HistogramJob(descs, spec, "meta")


@pytest.mark.parametrize("bins", ["tensorflow", 7, [-1.0, 0.0, 0.5, 2.0]], ids=["tf", "int", "edges"])
def test_reference_makes_no_host_sync(bins):
    dtypes = [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int32, torch.uint8, torch.bool]
    tensors = [torch.empty(1000 + i, dtype=dt, device="meta") for i, dt in enumerate(dtypes)]
    job = _meta_job(tensors, bins)
    H._reference_impl(job)  # any .item(), .cpu(), .tolist() or branch on data would raise here
    out = job.out
    assert out.buffer.device.type == "meta"
    assert out.counts.shape == (len(tensors), job.spec.num_bins) and out.stats.dtype == torch.float64


def test_meta_tensors_do_catch_host_reads():
    # the negative control: the proof above would fail for code that reads data
    x = torch.empty(10, device="meta")
    with pytest.raises(Exception):
        x.sum().item()
    with pytest.raises(Exception):
        bool(x.sum() > 0)


# ---- packed results -------------------------------------------------------------------------


def test_batch_outputs_live_in_one_buffer():
    batches = H.launch(H.describe_named({"a": torch.randn(100), "b": torch.randn(50).double()}), bins=5)
    (b,) = batches
    out = b.job.out
    assert out.buffer.size == 2 * 5 + 2 * 4 + 2 * 3 + 2  # counts, stats, non-finite counts, numel: one allocation
    assert np.shares_memory(out.counts, out.buffer) and np.shares_memory(out.stats, out.buffer)
    assert b.ready()


def test_results_are_views_of_their_batch():
    res = tbfast.histograms({"a": torch.randn(100), "b": torch.arange(9)})
    assert res["a"].batch is res["b"].batch


# ---- the writer packs on its own thread and never waits for the device ------------------------


class _PendingBatch:
    """A batch whose host copy lands only when the test says so (a stand-in for a GPU
    result whose event has not completed)."""

    def __init__(self, real, fail=None):
        self.real, self.fail = real, fail
        self.landed = threading.Event()
        self.device_type = "cuda"
        self.names, self.results = real.names, real.results
        self.numels, self.torch_out, self.backend, self.job = real.numels, real.torch_out, real.backend, real.job
        self.max_bins = real.max_bins
        self.started = False

    def __getattr__(self, name):  # everything else as the real batch
        return getattr(self.real, name)

    def start_host_copy(self):
        self.started = True
        return self

    def ready(self):
        return self.landed.is_set()

    def host(self):
        self.landed.wait(10)
        if self.fail:
            raise ValueError(self.fail)
        return self.real.host()


def _pending_launch(monkeypatch, fail=None):
    made = []
    real_launch = H.launch

    def launch(*a, **kw):
        batches = [_PendingBatch(b, fail) for b in real_launch(*a, **kw)]
        for p in batches:  # results read through the stand-in
            for r in p.results:
                r.batch = p
        made.extend(batches)
        return batches

    monkeypatch.setattr(H, "launch", launch)
    return made


def test_writer_does_not_wait_for_pending_results(monkeypatch, tmp_path):
    from conftest import values_by_tag

    made = _pending_launch(monkeypatch)
    w = tbfast.SummaryWriter(str(tmp_path))
    t0 = time.perf_counter()
    w.add_histograms({"a": torch.randn(100), "b": torch.randn(10)}, global_step=3)
    w.add_histogram("c", torch.randn(10), global_step=4)
    assert time.perf_counter() - t0 < 1.0
    assert all(p.started and not p.ready() for p in made)
    threading.Timer(0.2, lambda: [p.landed.set() for p in made]).start()
    w.flush()  # waits for what is pending
    tags = values_by_tag(tmp_path)
    assert {"a", "b", "c"} <= set(tags)
    assert tags["a"][0][0] == 3 and tags["c"][0][0] == 4
    w.close()


def test_data_errors_found_on_arrival_surface_on_the_next_call(monkeypatch, tmp_path):
    from conftest import values_by_tag

    made = _pending_launch(monkeypatch, fail="histogram of 'w': too many bins for data range")
    w = tbfast.SummaryWriter(str(tmp_path))
    w.add_histogram("w", torch.randn(10), bins=3)  # returns: the check needs the data
    for p in made:
        p.landed.set()
    deadline = time.time() + 10
    with pytest.raises(ValueError, match="'w'.*too many bins"):
        while time.time() < deadline:  # raised once, by the next call that sees it
            w.add_scalar("s", 1.0, 0)
            time.sleep(0.01)
    w.add_scalar("s", 2.0, 1)  # the writer keeps working
    w.close()
    assert [v.simple_value for _, v in values_by_tag(tmp_path)["s"]][-1] == 2.0


# ---- hardened bindings ------------------------------------------------------------------------


def test_bindings_take_keywords_only_and_check_arguments():
    mod, why = _native.cpu()
    if mod is None:
        pytest.skip(why)
    with pytest.raises(TypeError):
        mod.histogram(1, 2, 3)  # positional: a swapped argument can no longer be a wrong pointer
    x = np.arange(10.0)
    counts, stats, nonfinite = np.zeros(4, np.int64), np.zeros(4), np.zeros(3, np.int64)
    ranges = np.array([0.0, 10.0])
    ptrs, numels, codes = np.array([x.ctypes.data], np.uint64), np.array([10], np.int64), np.array([9], np.int32)
    good = dict(num_tensors=1, data=ptrs.ctypes.data, numels=numels.ctypes.data, dtypes=codes.ctypes.data,
                mode=mod.HIST_UNIFORM, num_bins=4, edges=0, lookup=0, ranges=ranges.ctypes.data, counts=counts.ctypes.data,
                stats=stats.ctypes.data, nonfinite=nonfinite.ctypes.data, stats_only=False, with_stats=True,
                num_threads=1)
    mod.histogram(**good)
    assert counts.tolist() == [3, 2, 3, 2]
    with pytest.raises(ValueError, match="uniform mode needs ranges"):
        mod.histogram(**dict(good, ranges=0))
    with pytest.raises(ValueError, match="invalid mode"):
        mod.histogram(**dict(good, mode=9))
    with pytest.raises(ValueError, match="num_threads"):
        mod.histogram(**dict(good, num_threads=0))
    with pytest.raises(TypeError):
        mod.histogram(**dict(good, bogus=1))
    bad_dtype = np.array([99], np.int32)
    with pytest.raises(ValueError, match="dtype"):
        mod.histogram(**dict(good, dtypes=bad_dtype.ctypes.data))


def test_constants_come_from_the_native_module():
    mod, why = _native.cpu()
    if mod is None:
        pytest.skip(why)
    assert (mod.HIST_EDGES, mod.HIST_UNIFORM, mod.HIST_UNIFORM_AUTO) == (H.EDGES, H.UNIFORM, H.UNIFORM_AUTO)
    assert mod.NUM_DTYPES == len(_dtypes.DTYPE_CODES)
    assert mod.HIST_STATS_PER_TENSOR == 4 and mod.HIST_NONFINITE_PER_TENSOR == 3
    assert mod.HIST_EDGE_LOOKUP_BYTES == H._lookup_for(H.default_edges().tobytes())[1].nbytes
    statuses = {k: v for k, v in vars(mod).items() if k.startswith("STATUS_")}
    assert len(set(statuses.values())) == len(statuses) and statuses["STATUS_OK"] == 0  # distinct codes


# ---- PR curves and image grids on the same contract ----------------------------------------

P = importlib.import_module("tbfast.pr_curve")
I = importlib.import_module("tbfast.image")

PR_CASES = [  # (mode, logits, weighted, labels kind)
    ("binary", False, False, "matrix"), ("binary", False, True, "matrix"), ("multiclass", False, False, "index"),
    ("multiclass", True, True, "index"), ("multiclass", False, False, "matrix"), ("multilabel", True, False, "matrix"),
]


def _pr_inputs(mode, logits, weighted, labels_kind, n=600, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    cols = 1 if mode == "binary" else c
    preds = torch.randn(n, cols, generator=g) * 3 if logits else torch.rand(n, cols, generator=g)
    if mode == "binary":
        preds = preds[:, 0]
        preds[:5] = torch.tensor([float("nan"), -0.5, 1.5, 0.0, 1.0])  # bad values counted too
        labels = torch.randint(0, 2, (n,), generator=g)
        labels[7] = 3
    elif labels_kind == "index":
        labels = torch.randint(0, c, (n,), generator=g)
        labels[3] = c + 2
    else:
        labels = torch.randint(0, 2, (n, c), generator=g).float()
        labels[4, 1] = 0.5
    weights = torch.rand(n, generator=g) if weighted else None
    if weighted:
        weights[11] = -1.0
    return labels, preds, weights


def _torch_state(state):
    """The CPU NumPy state as torch tensors over the same memory (for the torch reference)."""
    st = P._State.__new__(P._State)
    st.device = state.device
    st.counts = None if state.counts is None else torch.from_numpy(state.counts)
    st.sums = None if state.sums is None else torch.from_numpy(state.sums)
    st.bad = torch.from_numpy(state.bad)
    return st


@pytest.mark.parametrize("mode,logits,weighted,labels_kind", PR_CASES)
def test_pr_torch_reference_equals_the_numpy_reference(mode, logits, weighted, labels_kind):
    labels, preds, weights = _pr_inputs(mode, logits, weighted, labels_kind)
    want = P._State(1 if mode == "binary" else 4, 101, weighted)
    job = P._prepare(labels, preds, 101, weights, mode, logits)
    job.state = want
    P._reference_cpu(job)
    got = P._State(1 if mode == "binary" else 4, 101, weighted)
    job.state = _torch_state(got)
    P._reference_torch(job)
    np.testing.assert_array_equal(got.bad, want.bad)
    assert want.bad.sum() > 0  # the cases do contain bad values
    if weighted:
        np.testing.assert_allclose(got.sums, want.sums, rtol=1e-12)
    else:
        np.testing.assert_array_equal(got.counts, want.counts)


@pytest.mark.parametrize("mode,logits,weighted,labels_kind", PR_CASES)
def test_pr_torch_reference_makes_no_host_sync(mode, logits, weighted, labels_kind):
    labels, preds, weights = _pr_inputs(mode, logits, weighted, labels_kind, n=50)
    job = P._prepare(labels, preds, 101, weights, mode, logits)
    job.pred = _tensor.describe(job.pred.owner.to("meta"), layout="rowmajor", allow_meta=True)
    job.labels = _tensor.describe(job.labels.owner.to("meta"), layout="rowmajor", allow_meta=True)
    if job.weights is not None:
        job.weights = _tensor.describe(job.weights.owner.to("meta"), layout="rowmajor", allow_meta=True)
    st = P._State.__new__(P._State)
    st.device = ("meta", None)
    c = job.num_classes
    st.counts = None if weighted else torch.zeros((c, 101, 2), dtype=torch.int64, device="meta")
    st.sums = torch.zeros((c, 101, 2), dtype=torch.float64, device="meta") if weighted else None
    st.bad = torch.zeros(P.NUM_BAD_SLOTS, dtype=torch.int64, device="meta")
    job.state = st
    P._reference_torch(job)  # would raise on any read of data from the host
    assert st.bad.device.type == "meta"


@pytest.mark.parametrize("normalize,scale_each,value_range", [(False, False, None), (True, False, None),
                                                              (True, True, None), (True, False, (-1.0, 1.0))])
def test_image_reference_makes_no_host_sync(normalize, scale_each, value_range):
    plan = I.plan_grid(torch.rand(5, 3, 8, 9), nrow=2, normalize=normalize, scale_each=scale_each,
                       value_range=value_range)
    plan.images = [im.to("meta") for im in plan.images]
    I._grid_reference(plan)
    assert plan.out.device.type == "meta" and tuple(plan.out.shape) == plan.out_shape


class _DeviceCurve(P.PRCurve):
    """A CPU curve posing as a CUDA one: the writer must defer its check and packing."""

    device_type = "cuda"
    copied = False

    def start_host_copy(self):
        self.copied = True
        return self

    def _host_state(self):
        assert self.copied, "read before the host copy was started"
        return self._state.values(), self._state.bad


def test_pr_bad_values_from_the_device_surface_on_the_next_call(monkeypatch, tmp_path):
    from conftest import values_by_tag

    acc = tbfast.PRCurveAccumulator(11)
    acc.update(torch.tensor([0.5, float("nan"), 0.2]), torch.tensor([1, 0, 1]))
    real = acc.snapshot()
    fake = _DeviceCurve(real._state, real.num_thresholds, real.per_class)
    monkeypatch.setattr(acc, "snapshot", lambda: fake)
    w = tbfast.SummaryWriter(str(tmp_path))
    w.add_pr_accumulator("val/pr", acc, 1)  # returns: the check needs the counters on the host
    assert fake.copied
    with pytest.raises(tbfast.PRCurveValueError, match="add_pr_accumulator.*val/pr.*NaN"):
        w.flush()
    w.add_scalar("after", 1.0, 0)
    w.close()
    assert "after" in values_by_tag(tmp_path) and "val/pr" not in values_by_tag(tmp_path)
