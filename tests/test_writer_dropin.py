"""tbfast.SummaryWriter as a drop-in for torch.utils.tensorboard.SummaryWriter: every
public method, against torch's own writer, both read back with TensorBoard's readers."""

import glob
import inspect
import io
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbfast

from conftest import event_values, values_by_tag


def raw_events(logdir):
    """Every Event of every event file directly in ``logdir``, with TensorBoard's reader."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(str(logdir), "*tfevents*"))):
        out.extend(event_pb2.Event.FromString(r) for r in event_file_loader.RawEventFileLoader(path).Load())
    return out


def both(tmp_path, fn, **kwargs):
    """Runs fn(writer) with torch's writer and with tbfast's, in tmp_path/torch and
    tmp_path/ours; returns the two log dirs."""
    dirs = []
    for make, sub in ((TorchWriter, "torch"), (tbfast.SummaryWriter, "ours")):
        with make(str(tmp_path / sub), **kwargs) as w:
            fn(w)
        dirs.append(tmp_path / sub)
    return dirs


def same_values(tmp_path, fn):
    """fn run by both writers writes the same (step, Summary.Value) sequence."""
    theirs, ours = both(tmp_path, fn)
    a = [(s, v.SerializeToString()) for s, v in event_values(theirs)]
    b = [(s, v.SerializeToString()) for s, v in event_values(ours)]
    assert a and a == b
    return event_values(ours)


def decode_png(data):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


# --- the API ---------------------------------------------------------------------------


def public_methods(cls):
    return sorted(m for m in dir(cls) if not m.startswith("_") and callable(getattr(cls, m)))


# tbfast's keyword-only parameters after torch's, each documented in the method's docstring
EXTRA_KEYWORDS = {"add_histogram": ["group"]}


def annotation(a):
    """An annotation as a string: torch's writer module uses string annotations (``from
    __future__ import annotations``), a module without that import has objects."""
    return a if a is inspect.Signature.empty or isinstance(a, str) else inspect.formatannotation(a)


def signature(fn):
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default, annotation(p.annotation)) for p in sig.parameters.values()], \
        annotation(sig.return_annotation)


def test_every_public_method_with_torchs_signature():
    """torch's full signature (parameters in torch's order with their kinds, defaults and
    annotations; the return annotation); tbfast may only add its documented keyword-only
    parameters with defaults after them, so every torch call means the same."""
    missing = set(public_methods(TorchWriter)) - set(public_methods(tbfast.SummaryWriter))
    assert not missing
    for name in public_methods(TorchWriter) + ["__init__", "_get_file_writer"]:
        theirs, their_return = signature(getattr(TorchWriter, name))
        ours, our_return = signature(getattr(tbfast.SummaryWriter, name))
        assert (ours[:len(theirs)], our_return) == (theirs, their_return), name
        extra = ours[len(theirs):]
        assert [p[0] for p in extra] == EXTRA_KEYWORDS.get(name, []), name
        for p_name, kind, default, _ in extra:
            assert kind is inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty, (name, p_name)
            assert f"``{p_name}``" in getattr(tbfast.SummaryWriter, name).__doc__, (name, p_name)
    assert any(r == "None" for r in (signature(getattr(TorchWriter, n))[1] for n in public_methods(TorchWriter)))


def test_file_writer_has_torchs_file_writer_signatures():
    from torch.utils.tensorboard.writer import FileWriter as TorchFileWriter

    from tbfast.writer import FileWriter

    names = public_methods(TorchFileWriter)
    assert {"add_event", "add_summary", "add_graph", "add_onnx_graph", "flush", "close", "reopen"} <= set(names)
    for name in names + ["__init__"]:
        assert signature(getattr(FileWriter, name)) == signature(getattr(TorchFileWriter, name)), name


def test_torchs_public_attributes(tmp_path):
    from tbfast.writer import FileWriter

    t, o = TorchWriter(str(tmp_path / "torch"), purge_step=2), tbfast.SummaryWriter(str(tmp_path / "ours"), purge_step=2)
    attrs = {a for a in vars(t) if not a.startswith("_")}
    assert {"file_writer", "all_writers", "default_bins", "log_dir", "purge_step", "max_queue", "flush_secs",
            "filename_suffix"} <= attrs
    assert attrs <= {a for a in dir(o) if not a.startswith("_")}
    for a in ("purge_step", "max_queue", "flush_secs", "filename_suffix"):
        assert getattr(o, a) == getattr(t, a), a
    assert type(o.default_bins) is list and o.default_bins == t.default_bins and len(o.default_bins) == 1549
    for w, base in ((t, tmp_path / "torch"), (o, tmp_path / "ours")):
        assert w._get_file_writer() is w.file_writer and w.file_writer.get_logdir() == str(base)
        assert w.all_writers == {str(base): w.file_writer}
        w.add_scalars("g/h", {"x": 1.0}, 1)
        assert {os.path.relpath(k, base) for k in w.all_writers} == {".", "g_h_x"}
        assert all(callable(fw.add_summary) and callable(fw.flush) for fw in w.all_writers.values())
        w.close()
        assert w.file_writer is None and w.all_writers is None
        w.add_text("t", "again", 2)
        assert w.all_writers == {str(base): w.file_writer}
        w.close()
    assert isinstance(o._get_file_writer(), FileWriter)
    o.close()


# --- lifecycle -------------------------------------------------------------------------


def test_close_then_write_opens_a_new_event_file(tmp_path):
    for make, sub in ((TorchWriter, "torch"), (tbfast.SummaryWriter, "ours")):
        w = make(str(tmp_path / sub), purge_step=3)
        w.add_scalar("a", 1.0, 4)
        w.close()
        w.close()  # idempotent
        w.flush()  # no-op after close
        w.add_scalar("a", 2.0, 5)
        w.add_scalars("g", {"x": 1.0}, 5)
        w.close()
        w.add_scalars("g", {"x": 2.0}, 6)
        w.close()
    for sub in ("torch", "ours"):
        d = tmp_path / sub
        assert len(glob.glob(str(d / "*tfevents*"))) == 3  # first, reopened by add_scalar, by add_scalars
        assert len(glob.glob(str(d / "g_x" / "*tfevents*"))) == 2
    purge = lambda d: [(e.step, e.WhichOneof("what")) for e in raw_events(d) if e.step == 3]
    assert purge(tmp_path / "ours") == purge(tmp_path / "torch") == [(3, "file_version"), (3, "session_log")]
    for rel in ("", "g_x"):
        # sorted: file names of one second sort by a per-process counter (lexically, as
        # TensorBoard does), so 9 and 10 come out in either order in a long test run
        a = sorted((s, v.tag, v.simple_value) for s, v in event_values(tmp_path / "torch" / rel))
        b = sorted((s, v.tag, v.simple_value) for s, v in event_values(tmp_path / "ours" / rel))
        assert a == b and a


def test_get_logdir_and_default_name_as_torch(tmp_path, monkeypatch):
    for make, sub in ((TorchWriter, "torch"), (tbfast.SummaryWriter, "ours")):
        p = tmp_path / sub
        with make(p) as w:
            assert w.get_logdir() is p and w.log_dir is p
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for _ in range(5):  # both names come from the clock's second; retry across a tick
        monkeypatch.chdir(tmp_path / "a")
        a = TorchWriter(comment="_lr0.1")
        monkeypatch.chdir(tmp_path / "b")
        b = tbfast.SummaryWriter(comment="_lr0.1")
        a.close()
        b.close()
        if a.get_logdir() == b.get_logdir():
            break
    assert a.get_logdir() == b.get_logdir()
    assert a.get_logdir().startswith("runs" + os.sep) and a.get_logdir().endswith("_lr0.1")


def test_scalars_keep_call_order_and_reach_the_file_without_flush(tmp_path):
    w = tbfast.SummaryWriter(str(tmp_path), flush_secs=0.05)
    for i in range(600):
        w.add_scalar("s", float(i), i)
        if i % 100 == 0:
            w.add_text("t", str(i), i)
    deadline = time.time() + 10
    while time.time() < deadline:  # no flush(): the background hand-off and the flush timer
        if len(event_values(tmp_path)) == 606:
            break
        time.sleep(0.05)
    order = [(s, v.tag) for s, v in event_values(tmp_path)]
    expected = []
    for i in range(600):
        expected.append((i, "s"))
        if i % 100 == 0:
            expected.append((i, "t/text_summary"))
    assert order == expected
    w.close()


def test_scalars_survive_interpreter_exit(tmp_path):
    code = (
        "import tbfast\n"
        f"w = tbfast.SummaryWriter({str(tmp_path)!r}, flush_secs=1000)\n"
        "for i in range(1000): w.add_scalar('s', i * 0.5, i)\n"
        "raise SystemExit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    assert [(s, v.simple_value) for s, v in values_by_tag(tmp_path)["s"]] == [(i, i * 0.5) for i in range(1000)]


def test_scalar_values_equal_torch(tmp_path):
    values = [0.0, -0.0, 1e-45, 3.5e38, -1e39, float("inf"), float("nan"), np.float64(2.5), np.int64(7),
              torch.tensor(1.25), torch.tensor([4.0], dtype=torch.float64), np.array([[3.0]]), True, 12]
    steps = [None, 0, 1, 127, 128, 16384, 2**21, 2**28 + 5, 2**40, -1, np.int64(9), torch.tensor(11)]

    def fn(w):
        for i, v in enumerate(values):
            for j, s in enumerate(steps):
                w.add_scalar(f"v{i}", v, s, walltime=1000.0 + j)
    theirs, ours = both(tmp_path, fn)
    a = [e.SerializeToString() for e in raw_events(theirs) if e.HasField("summary")]
    b = [e.SerializeToString() for e in raw_events(ours) if e.HasField("summary")]
    assert len(a) == len(values) * len(steps) and a == b


# --- non-finite histograms ---------------------------------------------------------------


def test_no_histogram_for_a_step_without_finite_values(tmp_path):
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        w.add_histogram("h", torch.tensor([float("nan"), float("inf")]), 1)
        w.add_histogram("h", torch.tensor([1.0, float("nan")]), 2)
        w.add_histograms({"g": torch.full((5,), float("-inf"))}, 3)
    tags = values_by_tag(tmp_path)
    assert [s for s, _ in tags["h"]] == [2]
    assert [(s, v.simple_value) for s, v in tags["h/nan_count"]] == [(1, 1.0), (2, 1.0)]
    assert [(s, v.simple_value) for s, v in tags["h/posinf_count"]] == [(1, 1.0), (2, 0.0)]
    assert "g" not in tags and [(s, v.simple_value) for s, v in tags["g/neginf_count"]] == [(3, 5.0)]


# --- graphs ------------------------------------------------------------------------------


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_add_graph_equals_torch(tmp_path):
    torch.manual_seed(0)
    model, x = Net(), torch.randn(2, 1, 8, 8)
    theirs, ours = both(tmp_path, lambda w: w.add_graph(model, x))
    strip = lambda d: [(e.step, e.WhichOneof("what"), e.graph_def, e.tagged_run_metadata.SerializeToString())
                       for e in raw_events(d) if e.WhichOneof("what") in ("graph_def", "tagged_run_metadata")]
    a, b = strip(theirs), strip(ours)
    assert [k for _, k, _, _ in a] == ["graph_def", "tagged_run_metadata"]
    assert a == b
    from tensorboard.compat.proto.graph_pb2 import GraphDef

    assert any("Conv" in n.op or "conv" in n.name for n in GraphDef.FromString(b[0][2]).node)


def test_add_onnx_graph_equals_torch(tmp_path):
    onnx = pytest.importorskip("onnx", reason="add_onnx_graph needs onnx (pip install 'tbfast[onnx]')")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph), path)
    theirs, ours = both(tmp_path, lambda w: w.add_onnx_graph(path))
    a = [e.graph_def for e in raw_events(theirs) if e.WhichOneof("what") == "graph_def"]
    assert a and a == [e.graph_def for e in raw_events(ours) if e.WhichOneof("what") == "graph_def"]


# --- embeddings --------------------------------------------------------------------------


def embedding_files(root):
    out = {}
    for path in sorted(glob.glob(os.path.join(str(root), "**", "*"), recursive=True)):
        if os.path.isfile(path) and "tfevents" not in path:
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def test_add_embedding_equals_torch(tmp_path):
    rng = np.random.default_rng(0)
    mat = torch.from_numpy(rng.standard_normal((10, 5)).astype(np.float32))
    gray = torch.from_numpy((rng.integers(0, 256, (10, 1, 6, 6)) / 255).astype(np.float32))
    # float64 just below k/255: torch scales in float64, so these truncate to k - 1
    rgb = torch.from_numpy((rng.integers(1, 256, (7, 3, 4, 4)) - 1e-7) / 255)
    rgb[0] = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.1
    labels = [f"p{i}" for i in range(10)]

    def fn(w):
        w.add_embedding(mat, metadata=labels, label_img=gray, global_step=3, tag="a/b%c")
        w.add_embedding(mat[:7].double(), metadata=[[i, i % 2] for i in range(7)], metadata_header=["i", "odd"],
                        label_img=rgb, tag="rgb")
        w.add_embedding(mat.half(), global_step=12)
        w.add_embedding(np.arange(6).reshape(3, 2), global_step=13)

    theirs, ours = both(tmp_path, fn)
    a, b = embedding_files(theirs), embedding_files(ours)
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.endswith("sprite.png")]) == 2
    for name in a:
        if name.endswith(".png"):
            pa, pb = decode_png(a[name]), decode_png(b[name])
            assert pa.shape == pb.shape and np.array_equal(pa, pb), name
        else:
            assert a[name] == b[name], name
    config = b["projector_config.pbtxt"].decode()
    assert config.count("embeddings {") == 4 and "a%2fb%25c" in config


def test_embedding_sprite_scales_float64_in_float64():
    # torch's sprite multiplies by 255 in float64; float32 scaling (add_image's) would
    # round (k - 1e-7) / 255 up to k.
    x = torch.tensor([(k - 1e-7) / 255 for k in range(1, 257)], dtype=torch.float64)
    exact = np.floor(x.numpy() * 255)
    assert (exact != np.floor((x.float() * 255).numpy())).sum() > 50
    from tbfast.embedding_logging import sprite_pixels

    px = sprite_pixels(x.reshape(256, 1, 1, 1))
    assert np.array_equal(px[:16, :16, 0].reshape(-1), exact.astype(np.uint8))


# --- hparams -----------------------------------------------------------------------------


def test_add_hparams_equals_torch(tmp_path):
    def fn(w):
        w.add_hparams({"lr": 0.1, "bsize": 16, "opt": "adam", "bn": True}, {"hparam/acc": 0.9, "hparam/loss": 0.3},
                      hparam_domain_discrete={"opt": ["adam", "sgd"]}, run_name="run1", global_step=5)
        w.add_hparams({"lr": 0.2}, {"hparam/acc": 0.5}, run_name="run2")

    theirs, ours = both(tmp_path, fn)
    subdirs = lambda d: sorted(x for x in os.listdir(d) if os.path.isdir(d / x))
    assert subdirs(theirs) == subdirs(ours) == ["run1", "run2"]
    assert [e for e in raw_events(ours) if e.HasField("summary")] == []
    assert [e for e in raw_events(theirs) if e.HasField("summary")] == []
    for run in ("run1", "run2"):
        a = [(s, v.SerializeToString()) for s, v in event_values(theirs / run)]
        b = [(s, v.SerializeToString()) for s, v in event_values(ours / run)]
        assert len(a) in (5, 4) and a == b
    from tensorboard.plugins.hparams import plugin_data_pb2

    exp = plugin_data_pb2.HParamsPluginData.FromString(event_values(ours / "run1")[0][1].metadata.plugin_data.content)
    assert {h.name for h in exp.experiment.hparam_infos} == {"lr", "bsize", "opt", "bn"}


def test_add_hparams_default_run_name_and_type_check(tmp_path):
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        w.add_hparams({"a": 1}, {"m": 2.0})
        with pytest.raises(TypeError, match="dictionary"):
            w.add_hparams([("a", 1)], {"m": 2.0})
    (run,) = [d for d in os.listdir(tmp_path) if os.path.isdir(tmp_path / d)]
    assert abs(float(run) - time.time()) < 600


# --- file_writer: torch's FileWriter API -----------------------------------------------------


def events_after_the_first(logdir, keep_wall_time=False):
    """Serialised events of ``logdir`` after each file's first record (whose writer name
    differs), wall times zeroed unless kept."""
    out = []
    for e in raw_events(logdir):
        if e.WhichOneof("what") == "file_version" and e.source_metadata.writer:
            continue
        if not keep_wall_time:
            e.wall_time = 0
        out.append(e.SerializeToString())
    return out


def test_lightning_hparams_through_get_file_writer_equal_torch(tmp_path):
    """PyTorch Lightning's TensorBoardLogger.log_hyperparams: metrics through add_scalar,
    then torch's hparams summaries through ``experiment._get_file_writer().add_summary``."""
    from torch.utils.tensorboard.summary import hparams

    def fn(w):
        params, metrics = {"lr": 0.1, "opt": "adam", "layers": 3}, {"hp_metric": -1}
        w.add_scalar("hp_metric", -1, 0)  # log_metrics(metrics, 0)
        exp, ssi, sei = hparams(params, metrics)
        writer = w._get_file_writer()
        writer.add_summary(exp)
        writer.add_summary(ssi)
        writer.add_summary(sei)
        w.add_scalar("loss", 0.5, 1)  # buffered by tbfast; a later add_summary writes it first
        writer.add_summary(sei, np.int64(2), walltime=50.0)

    theirs, ours = both(tmp_path, fn)
    a, b = events_after_the_first(theirs), events_after_the_first(ours)
    assert len(a) == 6 and a == b
    tags = [(s, v.tag) for s, v in event_values(ours)]
    assert tags == [(0, "hp_metric"), (0, "_hparams_/experiment"), (0, "_hparams_/session_start_info"),
                    (0, "_hparams_/session_end_info"), (1, "loss"), (2, "_hparams_/session_end_info")]
    assert raw_events(ours)[-1].wall_time == 50.0
    from tensorboard.plugins.hparams import plugin_data_pb2

    exp = plugin_data_pb2.HParamsPluginData.FromString(event_values(ours)[1][1].metadata.plugin_data.content)
    assert {h.name for h in exp.experiment.hparam_infos} == {"lr", "opt", "layers"}


def test_file_writer_add_event_and_graphs_equal_torch(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event as TBEvent, SessionLog as TBSessionLog
    from torch.utils.tensorboard._pytorch_graph import graph

    torch.manual_seed(0)
    graph_profile = graph(Net(), torch.randn(2, 1, 8, 8))

    def fn(w):
        fw = w._get_file_writer()
        event = TBEvent(session_log=TBSessionLog(status=TBSessionLog.CHECKPOINT, checkpoint_path="ck", msg="m"))
        fw.add_event(event, np.int64(7), walltime=123.5)
        assert (event.wall_time, event.step) == (123.5, 7)  # set on the caller's event, as torch does
        fw.add_event(TBEvent(step=9, file_version="brain.Event:2"), walltime=124.0)  # its own step kept
        fw.add_graph(graph_profile, walltime=125.0)
        fw.add_onnx_graph(graph_profile[0], walltime=126.0)
        fw.flush()

    theirs, ours = both(tmp_path, fn)
    a, b = events_after_the_first(theirs, True), events_after_the_first(ours, True)
    assert len(a) == 5 and a == b
    assert [e.WhichOneof("what") for e in raw_events(ours)[1:]] == \
        ["session_log", "file_version", "graph_def", "tagged_run_metadata", "graph_def"]


def test_file_writer_takes_tbfast_protos_and_rejects_other_messages(tmp_path):
    from tbfast.proto import Event, SessionLog

    with tbfast.SummaryWriter(str(tmp_path)) as w:
        fw = w.file_writer
        fw.add_event(Event(session_log=SessionLog(status=SessionLog.STOP)), 3, 10.0)
        fw.add_summary(tbfast.writer.text_summary("t", "x"), 4, 11.0)
        fw.add_summary(tbfast.writer.scalar_summary("s", 2.0).SerializeToString(), 5, 12.0)
        with pytest.raises(TypeError, match="add_event expects a TensorBoard Event"):
            fw.add_event(tbfast.writer.scalar_summary("s", 1.0))
        with pytest.raises(TypeError, match="add_summary expects a TensorBoard Summary"):
            fw.add_summary(Event())
        with pytest.raises(ValueError, match="walltime=nan is not finite"):
            fw.add_event(Event(), walltime=float("nan"))
        with pytest.raises(TypeError, match="step"):
            fw.add_event(Event(), step=1.5)
    events = raw_events(tmp_path)[1:]
    assert [(e.step, e.wall_time, e.WhichOneof("what")) for e in events] == \
        [(3, 10.0, "session_log"), (4, 11.0, "summary"), (5, 12.0, "summary")]
    assert events[0].session_log.status == SessionLog.STOP


def test_file_writer_after_close_is_a_new_file_as_in_torch(tmp_path):
    from torch.utils.tensorboard.summary import scalar

    from tbfast.event_file import WriterClosedError

    kept = {}
    for make, sub in ((TorchWriter, "torch"), (tbfast.SummaryWriter, "ours")):
        w = make(str(tmp_path / sub))
        kept[sub] = w._get_file_writer()
        kept[sub].add_summary(scalar("a", 1.0), 1)
        w.close()
        w._get_file_writer().add_summary(scalar("a", 2.0), 2)  # a new FileWriter, a new file
        assert w.file_writer is not kept[sub]
        w.close()
        assert len(glob.glob(str(tmp_path / sub / "*tfevents*"))) == 2
    a = sorted((s, v.tag, v.simple_value) for s, v in event_values(tmp_path / "torch"))
    assert a == sorted((s, v.tag, v.simple_value) for s, v in event_values(tmp_path / "ours")) == \
        [(1, "a", 1.0), (2, "a", 2.0)]
    # the FileWriter kept from before close() is closed (torch's raises too); reopen() continues
    # in a new file (torch's FileWriter.reopen calls a method TensorBoard's writer lacks)
    old = kept["ours"]
    with pytest.raises(WriterClosedError):
        old.add_summary(scalar("a", 3.0), 3)
    old.reopen()
    old.reopen()  # open: nothing happens
    old.add_summary(scalar("a", 3.0), 3)
    old.close()
    assert len(glob.glob(str(tmp_path / "ours" / "*tfevents*"))) == 3
    assert sorted((s, v.simple_value) for s, v in values_by_tag(tmp_path / "ours")["a"]) == [(1, 1.0), (2, 2.0),
                                                                                           (3, 3.0)]


# --- figures -----------------------------------------------------------------------------


def make_figure(seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot(np.random.default_rng(seed).standard_normal(20))
    ax.set_title(f"seed {seed}")
    return fig


def test_add_figure_equals_torch_pixels(tmp_path):
    pytest.importorskip("matplotlib", reason="add_figure needs matplotlib (pip install 'tbfast[figures]')")

    def fn(w):
        w.add_figure("one", make_figure(0), 1)
        w.add_figure("many", [make_figure(s) for s in range(10)], 2)
        fig = make_figure(3)
        w.add_figure("kept", fig, 3, close=False)
        import matplotlib.pyplot as plt

        assert plt.fignum_exists(fig.number)
        plt.close(fig)

    theirs, ours = both(tmp_path, fn)
    a, b = values_by_tag(theirs), values_by_tag(ours)
    assert sorted(a) == sorted(b) == ["kept", "many", "one"]
    for tag in a:
        (sa, va), (sb, vb) = a[tag][0], b[tag][0]
        assert sa == sb
        ia, ib = va.image, vb.image
        assert (ia.height, ia.width, ia.colorspace) == (ib.height, ib.width, ib.colorspace)
        assert np.array_equal(decode_png(ia.encoded_image_string), decode_png(ib.encoded_image_string)), tag


# --- audio, video, mesh, boxes, tensors, custom scalars -------------------------------------


def test_audio_mesh_boxes_tensor_custom_scalars_equal_torch(tmp_path):
    g = torch.Generator().manual_seed(0)
    snd, verts, colors = torch.rand(1, 800, generator=g) * 2.4 - 1.2, torch.rand(1, 5, 3, generator=g), \
        torch.randint(0, 255, (1, 5, 3), generator=g)
    img, img2 = torch.rand(3, 20, 30, generator=g), torch.rand(20, 30, 3, generator=g)

    def fn(w):
        w.add_audio("snd", snd, 1, sample_rate=8000)
        w.add_mesh("m", verts, colors=colors, faces=torch.tensor([[[0, 1, 2], [2, 3, 4]]]),
                   config_dict={"camera": {"fov": 75}}, global_step=2)
        w.add_image_with_boxes("boxes", img, torch.tensor([[1, 2, 10, 12.0]]), 3, labels=["cat"])
        w.add_image_with_boxes("boxes2", img2, torch.tensor([[1, 2, 10, 12.0]] * 2), 4, dataformats="HWC", rescale=2,
                               labels=["only one"])
        w.add_tensor("t", torch.arange(6, dtype=torch.float32).reshape(2, 3), 5)
        w.add_tensor("th", torch.ones(2, dtype=torch.float16), 6)
        w.add_custom_scalars({"cat": {"loss": ["Multiline", ["loss/train", "loss/val"]],
                                      "acc": ["Margin", ["acc", "acc_lo", "acc_hi"]]}})
        w.add_custom_scalars_multilinechart(["a", "b"], category="c", title="t")
        w.add_custom_scalars_marginchart(["a", "b", "c"])
        with pytest.raises(AssertionError):
            w.add_custom_scalars_marginchart(["a", "b"])

    tags = {v.tag for _, v in same_values(tmp_path, fn)}
    assert {"snd", "boxes", "boxes2", "t", "th", "custom_scalars__config__"} <= tags


def test_add_video_equals_torch(tmp_path):
    pytest.importorskip("moviepy.editor", reason="torch's add_video encodes GIFs with moviepy < 2 (moviepy.editor)")
    g = torch.Generator().manual_seed(0)
    vid = torch.rand(3, 4, 3, 8, 10, generator=g)

    values = same_values(tmp_path, lambda w: (w.add_video("v", vid, 1, fps=5),
                                              w.add_video("u8", (vid * 255).to(torch.uint8), 2)))
    assert values[0][1].image.encoded_image_string[:3] == b"GIF"


# --- optional dependencies ------------------------------------------------------------------


def test_core_needs_no_tensorboard_and_the_rest_names_its_extra(tmp_path):
    code = (
        "import sys\n"
        "for m in ('tensorboard', 'matplotlib', 'tensorboardX'): sys.modules[m] = None\n"
        "import torch, tbfast\n"
        f"w = tbfast.SummaryWriter({str(tmp_path)!r})\n"
        "w.add_scalar('s', 1.0, 1); w.add_scalars('g', {'a': 1.0}, 1); w.add_text('t', 'x', 1)\n"
        "w.add_histogram('h', torch.randn(100), 1); w.add_histograms({'h2': torch.randn(9)}, 1)\n"
        "w.add_pr_curve('p', torch.randint(0, 2, (50,)), torch.rand(50), 1)\n"
        "w.add_image('i', torch.rand(3, 4, 4), 1); w.add_images('ii', torch.rand(2, 3, 4, 4), 1)\n"
        "for call, extra in ((lambda: w.add_hparams({'a': 1}, {'m': 1.0}), 'tbfast[tensorboard]'),\n"
        "                    (lambda: w.add_graph(torch.nn.Linear(2, 2), torch.randn(1, 2)), 'tbfast[tensorboard]'),\n"
        "                    (lambda: w.add_embedding(torch.randn(3, 2)), 'tbfast[tensorboard]'),\n"
        "                    (lambda: w.add_audio('a', torch.rand(10)), 'tbfast[tensorboard]'),\n"
        "                    (lambda: w.add_figure('f', None), 'tbfast[figures]')):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as exc:\n"
        "        assert extra in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError('no ImportError')\n"
        "w.close()\n"
        "assert 'tensorboard' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert {"s", "t/text_summary", "h", "h2", "p", "i", "ii"} <= set(values_by_tag(tmp_path))


@pytest.mark.parametrize("blocked", [("moviepy", "moviepy.editor"), ("moviepy.editor",)],
                         ids=["no moviepy", "moviepy 2 (no moviepy.editor)"])
def test_add_video_without_moviepy_names_the_extra(tmp_path, monkeypatch, blocked):
    pytest.importorskip("tensorboard")
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ImportError, match=r"add_video .*pip install 'tbfast\[video\]'"):
            w.add_video("v", torch.rand(1, 2, 3, 4, 4), 1)
        w.add_text("after", "still writes", 2)
    assert sorted(values_by_tag(tmp_path)) == ["after/text_summary"]


def test_add_onnx_graph_without_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ImportError, match=r"add_onnx_graph .*pip install 'tbfast\[onnx\]'"):
            w.add_onnx_graph(str(tmp_path / "model.onnx"))
    assert [e.WhichOneof("what") for e in raw_events(tmp_path)] == ["file_version"]


def test_scalar_hand_off_runs_in_a_forked_child(tmp_path):
    code = (
        "import os, time, tbfast\n"
        f"p = tbfast.SummaryWriter({str(tmp_path / 'parent')!r})\n"
        "p.add_scalar('s', 1.0, 1)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    c = tbfast.SummaryWriter({str(tmp_path / 'child')!r}, flush_secs=0.05)\n"
        "    c.add_scalar('c', 2.0, 2)\n"
        "    time.sleep(1.5)\n"
        "    os._exit(0)  # no close, no atexit: only the child's hand-off thread and flush timer\n"
        "os.waitpid(pid, 0)\n"
        "p.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert [(s, v.simple_value) for s, v in values_by_tag(tmp_path / "child")["c"]] == [(2, 2.0)]
    assert [(s, v.simple_value) for s, v in values_by_tag(tmp_path / "parent")["s"]] == [(1, 1.0)]
