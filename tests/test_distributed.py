"""Sharded models and sharded evaluation over torch.distributed, with gloo in 2 and 4
processes spawned on 127.0.0.1 (bounded in time): every result equals the single-process
result on the full tensor bucket for bucket (sums to rounding), and the event files
rank 0 writes equal what a single process writes."""

import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import tbfast
from conftest import values_by_tag

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dist_worker  # noqa: E402

BINS = ("tensorflow", "17", str([-5.0, -1.0, 0.0, 0.5, 2.0, 40.0]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[2, 4], ids=["world2", "world4"])
def run(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"dist{world}")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "dist_worker.py"), str(world), str(_free_port()),
                           str(out)], capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = []
    for r in range(world):
        with open(out / f"rank{r}.pkl", "rb") as f:
            ranks.append(pickle.load(f))
    return world, out, ranks


def _bins(key):
    return {"tensorflow": "tensorflow", "17": 17}.get(key) or eval(key)


def _assert_rows_equal(got, want, name):
    counts, limits, stats, nonfinite, num = got
    w_counts, w_limits, w_stats, w_nf, w_num = want
    assert counts == w_counts, name
    assert limits == w_limits, name
    assert nonfinite == w_nf and num == w_num, name
    assert stats[:2] == w_stats[:2], name  # min / max exact
    np.testing.assert_allclose(stats[2:], w_stats[2:], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("placement", ["shard0", "shard1", "replicate"])
@pytest.mark.parametrize("bins", BINS)
def test_dtensor_histograms_equal_the_full_tensor(run, placement, bins):
    world, _, ranks = run
    want = dist_worker.hist_rows(tbfast.histograms(dist_worker.full_tensors(), bins=_bins(bins)))
    for r, res in enumerate(ranks):  # every rank holds the reduced result
        got = res[(placement, bins)]
        for name in want:
            _assert_rows_equal(got[name], want[name], f"rank {r} {name}")


def test_two_dimensional_mesh(run):
    world, _, ranks = run
    want = dist_worker.hist_rows(tbfast.histograms(dist_worker.full_tensors()))
    for name in want:
        _assert_rows_equal(ranks[0][("mesh2d", "tensorflow")][name], want[name], name)


def test_plain_tensors_are_parts_of_the_data(run):
    world, _, ranks = run
    want = dist_worker.hist_rows(tbfast.histograms({"part": torch.arange(world * 10, dtype=torch.float32)}, bins=5))
    for res in ranks:
        _assert_rows_equal(res[("parts", "5")]["part"], want["part"], "part")


def _single_process_model(full, grads):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(9, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(full[name])
            p.grad = grads[name].clone()
    return model


def _compare_event_files(got_dir, want_dir, rename=lambda tag: tag):
    got = {rename(k): v for k, v in values_by_tag(got_dir).items()}
    want = values_by_tag(want_dir)
    assert sorted(got) == sorted(want) and want
    for tag in want:
        for (gs, gv), (ws, wv) in zip(got[tag], want[tag]):
            assert gs == ws
            if wv.HasField("histo"):
                g, w = gv.histo, wv.histo
                assert (list(g.bucket), list(g.bucket_limit), g.min, g.max, g.num) == \
                       (list(w.bucket), list(w.bucket_limit), w.min, w.max, w.num), tag
                assert g.sum == pytest.approx(w.sum, rel=1e-12, abs=1e-12)
                assert g.sum_squares == pytest.approx(w.sum_squares, rel=1e-12)
            else:
                assert gv == wv, tag


def test_fsdp2_parameters_and_gradients_written_by_rank_0(run, tmp_path):
    world, out, ranks = run
    model = _single_process_model(ranks[0]["fsdp_full"], ranks[0]["fsdp_grads"])
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_module_histograms(model, 1)
        w.add_module_histograms(model, 2, bins=11)
    _compare_event_files(out / "runs" / "fsdp", tmp_path / "single")
    assert not any((out / "runs").glob("fsdp*/**/rank1*"))


def test_fsdp1_flat_parameter_pieces(run, tmp_path):
    world, out, ranks = run
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(9, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(ranks[0]["fsdp1_state"][name])
    # every rank ran the same batch, so FSDP1's averaged gradients are this one's
    model(torch.randn(4, 9, generator=torch.Generator().manual_seed(7))).sum().backward()
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_module_histograms(model, 1)
    _compare_event_files(out / "runs" / "fsdp1", tmp_path / "single",
                         rename=lambda tag: tag.replace("_fsdp_wrapped_module.", ""))


@pytest.mark.parametrize("weighted", [False, True])
def test_sharded_evaluation_pr_curve(run, weighted):
    world, _, ranks = run
    g = torch.Generator().manual_seed(dist_worker.SEED)
    n = 1001
    preds, labels, weights = torch.rand(n, 5, generator=g), torch.randint(0, 5, (n,), generator=g), torch.rand(n, generator=g)
    acc = tbfast.PRCurveAccumulator(31, num_classes=5)
    acc.update(preds, labels, weights if weighted else None)
    want = acc.compute().data
    for res in ranks:
        if weighted:
            np.testing.assert_allclose(res[("pr", True)], want, rtol=1e-12)
        else:
            np.testing.assert_array_equal(res[("pr", False)], want)


def test_pr_accumulator_written_by_rank_0(run, tmp_path):
    world, out, _ = run
    g = torch.Generator().manual_seed(dist_worker.SEED)
    n = 1001
    preds, labels = torch.rand(n, 5, generator=g), torch.randint(0, 5, (n,), generator=g)
    acc = tbfast.PRCurveAccumulator(21)
    acc.update(preds[:, 0], (labels == 0).long())
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_pr_accumulator("val/pr", acc, 3)
    _compare_event_files(out / "runs" / "pr", tmp_path / "single")


def test_group_needs_an_initialised_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        tbfast.histograms({"x": torch.randn(4)}, group=True)
