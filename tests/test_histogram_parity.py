"""Parity with torch.utils.tensorboard: the same tensors written by torch's SummaryWriter and
by tbfast (its own writer, and torch's / tensorboardX's writer accelerated), read back
with TensorBoard's event loader and compared proto field by proto field."""

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbfast

from conftest import require_backend, values_by_tag


def compare_histos(ours, theirs):
    assert len(theirs.bucket) >= 2 and theirs.num > 0  # a real histogram on both sides
    assert list(ours.bucket) == list(theirs.bucket)
    assert list(ours.bucket_limit) == list(theirs.bucket_limit)
    assert (ours.min, ours.max, ours.num) == (theirs.min, theirs.max, theirs.num)
    n = max(1.0, theirs.num)
    for a, b, mag in ((ours.sum, theirs.sum, None), (ours.sum_squares, theirs.sum_squares, theirs.sum_squares)):
        scale = abs(mag) if mag is not None else max(abs(theirs.min), abs(theirs.max)) * n
        assert abs(a - b) <= 2.3e-16 * n * (scale + 1), (a, b)


def write_both(tmp_path, cases, **kw):
    """cases: [(tag, tensor_for_torch, tensor_for_tbfast)]; returns ({tag: ours}, {tag: theirs})."""
    raised = set()
    with TorchWriter(str(tmp_path / "torch")) as tw:
        for tag, tt, _ in cases:
            try:
                tw.add_histogram(tag, tt, 3, **kw)
            except ValueError as exc:  # every value outside the edges: torch gives up
                assert "histogram is empty" in str(exc)
                raised.add(tag)
    with tbfast.SummaryWriter(str(tmp_path / "tbfast")) as w:
        for tag, _, ot in cases:
            w.add_histogram(tag, ot, 3, **kw)
    theirs = {tag: vs[0][1].histo for tag, vs in values_by_tag(tmp_path / "torch").items()}
    ours = {tag: vs[0][1].histo for tag, vs in values_by_tag(tmp_path / "tbfast").items()}
    for tag in raised:  # tbfast writes a valid histogram with no bucketed value instead
        assert sum(ours.pop(tag).bucket) == 0
    return ours, theirs


def tensors():
    g = torch.Generator().manual_seed(0)
    edges = torch.tensor(tbfast.default_edges())
    yield "normal_f32", torch.randn(10007, generator=g)
    yield "wide_f64", torch.randn(5001, generator=g, dtype=torch.float64) * 1e6
    yield "tiny", torch.randn(999, generator=g) * 1e-11
    yield "on_edges", torch.cat([edges, edges.nextafter(torch.tensor(np.inf, dtype=torch.float64))])
    yield "signed_zero", torch.tensor([0.0, -0.0, 0.0, 1e-12, -1e-12])
    yield "subnormal", torch.tensor([5e-324, -5e-324, 2.2e-308, 1.0], dtype=torch.float64)
    yield "beyond_edge", torch.tensor([1e20, -3e20, 1.0, 2.0, 9.92e19, -9.9e19], dtype=torch.float64)
    yield "single", torch.tensor([5.0])
    yield "zeros", torch.zeros(2)
    yield "ints", torch.arange(-500, 700, dtype=torch.int32)
    yield "int64", torch.randint(-(2 ** 40), 2 ** 40, (3000,), generator=g)
    yield "uint8", torch.randint(0, 256, (4000,), dtype=torch.uint8, generator=g)
    yield "int8", torch.randint(-128, 128, (4000,), dtype=torch.int8, generator=g)
    yield "int16", torch.randint(-30000, 30000, (4000,), dtype=torch.int16, generator=g)
    yield "bool", torch.rand(777, generator=g) > 0.3
    yield "f16", torch.randn(3333, generator=g).half() * 100
    yield "uint16", torch.from_numpy(np.arange(0, 65535, 7, dtype=np.uint16))
    yield "uint32", torch.from_numpy(np.arange(0, 2 ** 32 - 1, 2 ** 20 + 3, dtype=np.uint32))
    yield "uint64", torch.from_numpy(np.array([0, 1, 2 ** 53 + 1, 2 ** 63, 2 ** 64 - 1], dtype=np.uint64))
    yield "matrix_t", torch.randn(61, 37, generator=g).t()


@pytest.mark.parametrize("kw", [{}, {"bins": 30}, {"bins": [-2.0, -0.5, 0.0, 0.25, 1.0, 3.0]}, {"bins": "auto"},
                                {"bins": "fd"}, {"max_bins": 100}, {"max_bins": 7}, {"bins": 50, "max_bins": 12}],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_add_histogram_matches_torch(tmp_path, backend, monkeypatch, kw):
    require_backend("histogram", backend)
    monkeypatch.setenv("TBFAST_BACKEND", backend)
    # Quantile estimators ask for absurd bin counts on degenerate data (numpy's own
    # behaviour, e.g. 'fd' on subnormals); they get the well-spread tensors only.
    spread = ("normal_f32", "wide_f64", "ints", "int64", "uint8", "int16", "f16", "matrix_t")
    cases = [(tag, t, t) for tag, t in tensors()
             if kw.get("bins") not in ("auto", "fd") or tag in spread]
    ours, theirs = write_both(tmp_path, cases, **kw)
    assert set(ours) == set(theirs)
    for tag in theirs:
        compare_histos(ours[tag], theirs[tag])


def test_bfloat16_matches_torch_fed_float32(tmp_path):
    # torch casts bf16 to fp16 (|x| > 65504 -> inf, a bug not to copy): compare with torch
    # fed the same values as float32.
    t = (torch.randn(5000) * torch.tensor([1.0, 1e3, 1e6, 1e-6]).repeat(1250)).bfloat16()
    ours, theirs = write_both(tmp_path, [("bf16", t.float(), t)])
    compare_histos(ours["bf16"], theirs["bf16"])
    assert ours["bf16"].max > 65504


def test_nonfinite_written_as_scalars_and_no_histogram_without_finite_values(tmp_path):
    x = torch.randn(1000)
    x[::100] = float("nan")
    x[1] = float("inf")
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        w.add_histogram("w", x, 0)
        w.add_histogram("w", torch.randn(10), 1)  # clean again: counts go back to 0
        w.add_histogram("clean", torch.randn(10), 0)
        w.add_histogram("allnan", torch.full((4,), float("nan")), 0)
    tags = values_by_tag(tmp_path)
    assert [(s, v.simple_value) for s, v in tags["w/nan_count"]] == [(0, 10.0), (1, 0.0)]
    assert [(s, v.simple_value) for s, v in tags["w/posinf_count"]] == [(0, 1.0), (1, 0.0)]
    assert "clean/nan_count" not in tags
    h = tags["w"][0][1].histo
    assert h.num == 989 and sum(h.bucket) == 989 and np.isfinite([h.min, h.max, h.sum, h.sum_squares]).all()
    # finite values are bucketed exactly as torch buckets the finite part
    with TorchWriter(str(tmp_path / "t")) as tw:
        tw.add_histogram("w", x[torch.isfinite(x)], 0)
    ref = values_by_tag(tmp_path / "t")["w"][0][1].histo
    assert list(h.bucket) == list(ref.bucket) and list(h.bucket_limit) == list(ref.bucket_limit)
    assert "allnan" not in tags  # no finite value: the counts only, no (misleading) empty histogram
    assert [v.simple_value for _, v in tags["allnan/nan_count"]] == [4.0]


def test_tensorboard_histogram_plugin_reads_our_files(tmp_path):
    """Through TensorBoard's data provider and legacy-to-[k,3] conversion (spec 6.2)."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins.histogram import histograms_plugin
    from tensorboard.plugins import base_plugin
    from tensorboard import context

    with tbfast.SummaryWriter(str(tmp_path / "run")) as w:
        for step in range(3):
            w.add_histogram("layer/w", torch.randn(1000) + step, step)
        w.add_histogram("nan_only", torch.full((3,), float("nan")), 0)
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(tmp_path))
    ctx = base_plugin.TBContext(logdir=str(tmp_path), multiplexer=mux, data_provider=provider)
    plugin = histograms_plugin.HistogramsPlugin(ctx)
    data, _ = plugin.histograms_impl(context.RequestContext(), "layer/w", "run", experiment="")
    assert [d[1] for d in data] == [0, 1, 2]
    for _, step, buckets in data:
        assert sum(b[2] for b in buckets) == 1000
    # a step without finite values writes no histogram, only the non-finite counts
    assert "nan_only" not in plugin.index_impl(context.RequestContext(), experiment="")["run"]
    assert "nan_only/nan_count" in mux.GetAccumulator("run").Tags()["tensors"]


def test_histogram_raw_matches_torch(tmp_path):
    args = dict(min=-1.0, max=2.0, num=5, sum=3.0, sum_squares=7.5, bucket_limits=[0.0, 1.0, 2.0],
                bucket_counts=[1, 2, 2])
    with TorchWriter(str(tmp_path / "torch")) as tw:
        tw.add_histogram_raw("r", global_step=1, **args)
    with tbfast.SummaryWriter(str(tmp_path / "ours")) as w:
        w.add_histogram_raw("r", global_step=1, **args)
        with pytest.raises(ValueError, match="len"):
            w.add_histogram_raw("bad", -1, 1, 1, 1, 1, [1.0], [1, 2])
    a = values_by_tag(tmp_path / "torch")["r"][0][1]
    b = values_by_tag(tmp_path / "ours")["r"][0][1]
    assert a.SerializeToString() == b.SerializeToString()


def test_add_histogram_empty_names_tag(tmp_path):
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="'layer.bias'.*no elements"):
            w.add_histogram("layer.bias", torch.empty(0))


@pytest.mark.parametrize("kind", ["torch", "tensorboardX"])
def test_accelerate_foreign_writer(tmp_path, kind):
    if kind == "torch":
        make = TorchWriter
    else:
        import tensorboardX

        make = tensorboardX.SummaryWriter
    x = torch.randn(20001)
    with make(str(tmp_path / "plain")) as w:
        w.add_histogram("h", x, 1)
        w.add_histogram("h2", x * 3, 2, bins=25)
        w.add_scalar("s", 1.0, 1)
    w = tbfast.accelerate(make(str(tmp_path / "fast")))
    assert tbfast.accelerate(w) is w
    w.add_histogram("h", x, 1)
    w.add_histogram("h2", x * 3, 2, bins=25)
    w.add_scalar("s", 1.0, 1)  # not accelerated: still the writer's own
    y = x.clone()
    y[0] = float("nan")
    w.add_histogram("with_nan", y, 3)  # torch would raise; accelerated writer counts it
    w.close()
    plain, fast = values_by_tag(tmp_path / "plain"), values_by_tag(tmp_path / "fast")
    for tag in ("h", "h2"):
        compare_histos(fast[tag][0][1].histo, plain[tag][0][1].histo)
    assert fast["s"][0][1].simple_value == 1.0
    assert fast["with_nan/nan_count"][0][1].simple_value == 1.0


def test_accelerate_rejects_other_objects():
    with pytest.raises(TypeError, match="SummaryWriter"):
        tbfast.accelerate(object())
