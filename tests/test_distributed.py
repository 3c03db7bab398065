"""Sharded models and sharded evaluation over torch.distributed, with gloo in 2 and 4
processes spawned on 127.0.0.1 (bounded in time): every result equals the single-process
result on the full tensor bucket for bucket (sums to rounding), and the event files
rank 0 writes equal what a single process writes."""

import os
import pickle
import sys

import numpy as np
import pytest
import torch

import tbfast
from conftest import free_port, run_bounded, values_by_tag

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dist_worker  # noqa: E402

BINS = ("tensorflow", "17", str([-5.0, -1.0, 0.0, 0.5, 2.0, 40.0]))


@pytest.fixture(scope="module", params=[2, 4], ids=["world2", "world4"])
def run(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"dist{world}")
    returncode, _, stderr = run_bounded(
        [sys.executable, os.path.join(HERE, "dist_worker.py"), str(world), str(free_port()), str(out)], timeout=420)
    assert returncode == 0, stderr[-4000:]
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


@pytest.mark.parametrize("bins", BINS)
def test_all_reduce_reduction_equals_the_full_tensor(run, bins):
    """Above the gather limit (forced to 0 in the worker) the reduction is two all_reduce:
    counts, min and max exact, sums to rounding."""
    world, _, ranks = run
    want = dist_worker.hist_rows(tbfast.histograms(dist_worker.full_tensors(), bins=_bins(bins)))
    for r, res in enumerate(ranks):
        for name in want:
            _assert_rows_equal(res[("allreduce", bins)][name], want[name], f"rank {r} {name}")


@pytest.mark.parametrize("bins", ["tensorflow", "17"])
def test_max_bins_with_a_group(run, bins):
    world, _, ranks = run
    want = dist_worker.hist_rows(tbfast.histograms(dist_worker.full_tensors(), bins=_bins(bins), max_bins=5))
    unmerged = dist_worker.hist_rows(tbfast.histograms(dist_worker.full_tensors(), bins=_bins(bins)))
    for r, res in enumerate(ranks):
        for name in want:
            assert len(want[name][0]) < len(unmerged[name][0])  # max_bins merged the buckets
            _assert_rows_equal(res[("max_bins", bins)][name], want[name], f"rank {r} {name}")


@pytest.mark.parametrize("bins", ["auto", "fd"])
def test_estimator_bins_with_a_group_raise_a_clear_error(run, bins):
    world, _, ranks = run
    for res in ranks:
        for call in ("histograms", "add_histograms"):
            assert res[("estimator", bins, call)] == \
                f"bins={bins!r} needs every value on one host; use an int or edges with group=", call


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
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag  # same steps, none missing
        for (gs, gv), (ws, wv) in zip(got[tag], want[tag]):
            if wv.HasField("histo"):
                g, w = gv.histo, wv.histo
                assert (list(g.bucket), list(g.bucket_limit), g.min, g.max, g.num) == \
                       (list(w.bucket), list(w.bucket_limit), w.min, w.max, w.num), tag
                assert g.sum == pytest.approx(w.sum, rel=1e-12, abs=1e-12)
                assert g.sum_squares == pytest.approx(w.sum_squares, rel=1e-12)
            else:
                assert gv == wv, tag


def _assert_only_rank_0_wrote(root, world):
    """Every rank had a writer under root/rank<r>; the others wrote no value."""
    for r in range(1, world):
        assert list((root / f"rank{r}").glob("*tfevents*")), f"rank {r} had no writer"
        assert values_by_tag(root / f"rank{r}") == {}, f"rank {r} wrote"


def test_fsdp2_parameters_and_gradients_written_by_rank_0(run, tmp_path):
    world, out, ranks = run
    model = _single_process_model(ranks[0]["fsdp_full"], ranks[0]["fsdp_grads"])
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_module_histograms(model, 1)
        w.add_module_histograms(model, 2, bins=11)
    _compare_event_files(out / "runs" / "fsdp" / "rank0", tmp_path / "single")
    _assert_only_rank_0_wrote(out / "runs" / "fsdp", world)


def test_summary_writer_group_methods_written_by_rank_0(run, tmp_path):
    """add_histogram / add_histograms / add_module_histograms(group=True) with a writer
    on every rank: rank 0 writes what one process writes, the others nothing."""
    world, out, ranks = run
    full = dist_worker.full_tensors()
    model = _single_process_model(ranks[0]["fsdp_full"], ranks[0]["fsdp_grads"])
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_histogram("a", full["a"], 1)
        w.add_histograms(full, 2, bins=17)
        w.add_module_histograms(model, 3)
    _compare_event_files(out / "runs" / "writer" / "rank0", tmp_path / "single")
    _assert_only_rank_0_wrote(out / "runs" / "writer", world)


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


def test_fsdp1_flat_parameters_are_the_original_parameters(run, tmp_path):
    """use_orig_params=False: FlatParameters (padded shards of 15 and 9 elements, one unit
    nested) logged as the original parameters: tags the model's names, histograms equal
    the single-process ones (padding never counted)."""
    world, out, ranks = run
    model = dist_worker.fsdp1_flat_model()
    model(dist_worker.fsdp1_flat_input()).sum().backward()  # every rank ran this batch: same averaged gradients
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_module_histograms(model, 1)
        w.add_module_histograms(model, 2, bins=11)
    _compare_event_files(out / "runs" / "fsdp1_flat" / "rank0", tmp_path / "single")
    _assert_only_rank_0_wrote(out / "runs" / "fsdp1_flat", world)
    # without a group each rank has its own pieces: together exactly the parameters' elements
    sizes = {}
    for res in ranks:
        for tag, n in res["fsdp1_flat_local"].items():
            sizes[tag] = sizes.get(tag, 0) + n
    assert sizes == {f"{kind}/{name}": p.numel() for name, p in model.named_parameters()
                     for kind in ("parameters", "gradients")}


@pytest.mark.parametrize("scenario", dist_worker.PR_SCENARIOS)
def test_pr_sync_ranks_that_saw_different_batches(run, scenario):
    """A rank with no batch, one with weighted and others with unweighted batches (and
    rank 0 the empty one): every rank holds the curve of the union, weighted when any
    rank was (sums exact here: the weights are multiples of 1/4), int64 counts otherwise."""
    world, _, ranks = run
    acc = dist_worker.pr_accumulator(world, scenario, range(world))
    want, weighted = acc.compute().data, acc.state_dict()["weighted"]
    assert weighted == (scenario != "empty0")
    for res in ranks:
        data, got_weighted, dtype = res[("pr_mixed", scenario)]
        assert (got_weighted, dtype) == (weighted, "float64" if weighted else "int64")
        np.testing.assert_array_equal(data, want)


def test_pr_sync_ranks_that_differ_written_by_rank_0(run, tmp_path):
    world, out, _ = run
    with tbfast.SummaryWriter(str(tmp_path / "single")) as w:
        w.add_pr_accumulator("val/pr", dist_worker.pr_accumulator(world, "mixed_empty0", range(world)), 4)
        w.add_pr_accumulator("val/pr_empty0", dist_worker.pr_accumulator(world, "empty0", range(world)), 5)
    _compare_event_files(out / "runs" / "pr_mixed" / "rank0", tmp_path / "single")
    _assert_only_rank_0_wrote(out / "runs" / "pr_mixed", world)


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
