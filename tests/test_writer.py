"""tbfast.SummaryWriter's everyday methods against torch's writer, read back raw."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbfast

from conftest import event_values, values_by_tag


def raw_events(logdir):
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2
    import glob

    (path,) = glob.glob(os.path.join(str(logdir), "*tfevents*"))
    return [event_pb2.Event.FromString(r) for r in event_file_loader.RawEventFileLoader(path).Load()]


def test_scalars_and_text_equal_torch(tmp_path):
    for make, sub in ((TorchWriter, "torch"), (tbfast.SummaryWriter, "ours")):
        with make(str(tmp_path / sub)) as w:
            w.add_scalar("loss", 0.25, 1, walltime=100.0)
            w.add_scalar("t", torch.tensor(3.5), 2, walltime=101.0)
            w.add_scalar("np", np.float32(1.5), 3, walltime=102.0)
            w.add_scalar("new", 2.0, 4, walltime=103.0, new_style=True)
            w.add_scalar("dbl", 2.0, 5, walltime=104.0, new_style=True, double_precision=True)
            w.add_text("notes", "**hello** wörld", 6, walltime=105.0)
    ours = [e for e in raw_events(tmp_path / "ours") if e.HasField("summary")]
    theirs = [e for e in raw_events(tmp_path / "torch") if e.HasField("summary")]
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert a.SerializeToString() == b.SerializeToString()


def test_add_scalars_layout_equals_torch(tmp_path):
    for make, sub in ((TorchWriter, "torch"), (tbfast.SummaryWriter, "ours")):
        with make(str(tmp_path / sub)) as w:
            w.add_scalars("run/loss", {"train": 1.0, "val": 2.0}, 7)
    dirs = lambda p: sorted(d for d in os.listdir(p) if os.path.isdir(os.path.join(p, d)))
    assert dirs(tmp_path / "ours") == dirs(tmp_path / "torch") == ["run_loss_train", "run_loss_val"]
    for d in dirs(tmp_path / "ours"):
        a = [(s, v.tag, v.simple_value) for s, v in event_values(tmp_path / "ours" / d)]
        b = [(s, v.tag, v.simple_value) for s, v in event_values(tmp_path / "torch" / d)]
        assert a == b


def test_first_record_and_purge_step(tmp_path):
    with tbfast.SummaryWriter(str(tmp_path), purge_step=5) as w:
        w.add_scalar("x", 1.0, 6)
    ev = raw_events(tmp_path)
    assert ev[0].file_version == "brain.Event:2"
    assert ev[1].step == 5 and ev[1].file_version == "brain.Event:2"
    assert ev[2].step == 5 and ev[2].session_log.status == 1  # START
    assert ev[3].step == 6


def test_default_logdir_and_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tbfast.SummaryWriter(comment="_exp", filename_suffix=".v2") as w:
        assert w.get_logdir().startswith("runs" + os.sep) and w.get_logdir().endswith("_exp")
        w.add_scalar("a", 1, 0)
    (name,) = os.listdir(w.get_logdir())
    assert name.startswith("events.out.tfevents.") and name.endswith(".v2")


def test_scalar_rejects_many_elements(tmp_path):
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(ValueError, match="one element"):
            w.add_scalar("x", torch.ones(2))


def test_threads_and_caller_exceptions_lose_nothing(tmp_path):
    w = tbfast.SummaryWriter(str(tmp_path), max_queue=3)

    def work(k):
        for i in range(50):
            w.add_histogram(f"h{k}", torch.randn(100), i)
            w.add_scalar(f"s{k}", float(i), i)
        raise RuntimeError("caller thread fails after writing")

    threads = [threading.Thread(target=lambda k=k: pytest.raises(RuntimeError, work, k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    tags = values_by_tag(tmp_path)
    for k in range(4):
        assert [s for s, _ in tags[f"h{k}"]] == list(range(50))
        assert [v.simple_value for _, v in tags[f"s{k}"]] == [float(i) for i in range(50)]


def test_interpreter_exit_without_close_keeps_everything(tmp_path):
    code = (
        "import torch, tbfast\n"
        f"w = tbfast.SummaryWriter({str(tmp_path)!r}, flush_secs=1000)\n"
        "for i in range(200): w.add_histogram('h', torch.randn(50), i)\n"
        "raise SystemExit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    assert [s for s, _ in values_by_tag(tmp_path)["h"]] == list(range(200))


def test_module_histograms(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    model(torch.randn(5, 4)).sum().backward()
    model[2].bias.grad = None
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        w.add_module_histograms(model, 9, prefix="m/")
    tags = values_by_tag(tmp_path)
    assert sorted(tags) == sorted(["m/parameters/0.weight", "m/parameters/0.bias", "m/parameters/2.weight",
                                   "m/parameters/2.bias", "m/gradients/0.weight", "m/gradients/0.bias",
                                   "m/gradients/2.weight"])
    h = tags["m/parameters/0.weight"][0][1].histo
    assert h.num == 12 and sum(h.bucket) == 12
    assert tags["m/gradients/0.weight"][0][0] == 9


def test_add_histograms_equals_add_histogram(tmp_path):
    named = {f"t{i}": torch.randn(10 + i * 37) for i in range(20)}
    with tbfast.SummaryWriter(str(tmp_path / "batch")) as w:
        w.add_histograms(named, 4)
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        for tag, t in named.items():
            w.add_histogram(tag, t, 4)
    a, b = values_by_tag(tmp_path / "batch"), values_by_tag(tmp_path / "single")
    assert a.keys() == b.keys()
    for tag in a:
        assert a[tag][0][1].histo.SerializeToString() == b[tag][0][1].histo.SerializeToString()
