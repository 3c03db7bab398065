"""tbfast.watch / unwatch: parameter and gradient histograms every log_freq backward
passes, against torch's writer's add_histogram of the same tensors at the same steps."""

import math
import os
import sys
import textwrap

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbfast
from tbfast.watch import unwrapped_name

from conftest import free_port, run_bounded, values_by_tag


def assert_same_histograms(ours, theirs):
    """Same tags and steps; buckets, limits, num, min, max exact; sums to rounding."""
    assert sorted(ours) == sorted(theirs) and ours
    for tag in theirs:
        assert [s for s, _ in ours[tag]] == [s for s, _ in theirs[tag]], tag
        for (_, a), (_, b) in zip(ours[tag], theirs[tag]):
            a, b = a.histo, b.histo
            assert list(a.bucket) == list(b.bucket) and list(a.bucket_limit) == list(b.bucket_limit), tag
            assert (a.num, a.min, a.max) == (b.num, b.min, b.max), tag
            assert math.isclose(a.sum, b.sum, rel_tol=1e-9, abs_tol=1e-12), tag
            assert math.isclose(a.sum_squares, b.sum_squares, rel_tol=1e-9), tag


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def train(model, steps, reference=None, log=("parameters", "gradients"), log_freq=1, frozen=()):
    """SGD steps; with a torch writer, logs what watch should log, read after backward."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        opt.zero_grad()
        model(torch.randn(5, 6, generator=g)).pow(2).mean().backward()
        if reference is not None and step % log_freq == 0:
            for name, p in model.named_parameters():
                if "parameters" in log:
                    reference.add_histogram(f"parameters/{name}", p, step)
                if "gradients" in log and p.grad is not None:
                    reference.add_histogram(f"gradients/{name}", p.grad, step)
        opt.step()


@pytest.mark.parametrize("log", ["parameters", "gradients", "all"])
def test_watch_logs_what_torch_logs(tmp_path, log):
    kinds = ("parameters", "gradients") if log == "all" else (log,)
    with TorchWriter(str(tmp_path / "torch")) as ref:
        train(make_model(), 6, ref, kinds, log_freq=2)
    model = make_model()
    with tbfast.SummaryWriter(str(tmp_path / "ours")) as w:
        tbfast.watch(model, w, log=log, log_freq=2)
        train(model, 6)
    ours, theirs = values_by_tag(tmp_path / "ours"), values_by_tag(tmp_path / "torch")
    assert_same_histograms(ours, theirs)
    assert sorted({s for v in ours.values() for s, _ in v}) == [2, 4, 6]


def test_log_frequency_step_count_and_unwatch(tmp_path):
    model = make_model()
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        handle = tbfast.watch(model, w, log_freq=3)
        train(model, 10)
        assert handle.steps == 10
        tbfast.unwatch(model)
        tbfast.unwatch(model)  # no-op
        train(model, 6)
        assert handle.steps == 10
        handle2 = tbfast.watch(model, w, log="parameters", log_freq=4, prefix="again/")
        tbfast.watch(model, w, log="parameters", log_freq=4, prefix="again/")  # replaces, never doubles
        train(model, 4)
        assert handle2.steps == 0
    tags = values_by_tag(tmp_path)
    assert sorted(tags) == sorted([f"gradients/{n}" for n in ("0.weight", "0.bias", "2.weight", "2.bias")] +
                                  [f"again/parameters/{n}" for n in ("0.weight", "0.bias", "2.weight", "2.bias")])
    assert [s for s, _ in tags["gradients/0.weight"]] == [3, 6, 9]
    assert [s for s, _ in tags["again/parameters/2.bias"]] == [4]


def test_frozen_first_layer_and_missing_grads(tmp_path):
    model = make_model()
    model[0].requires_grad_(False)
    with tbfast.SummaryWriter(str(tmp_path)) as w:
        handle = tbfast.watch(model, w, log="all", log_freq=1)
        train(model, 2)
    assert handle.steps == 2
    tags = values_by_tag(tmp_path)
    assert "gradients/0.weight" not in tags and [s for s, _ in tags["gradients/2.weight"]] == [1, 2]
    assert [s for s, _ in tags["parameters/0.weight"]] == [1, 2]


def test_bad_arguments():
    model = make_model()
    with pytest.raises(ValueError, match="log must be"):
        tbfast.watch(model, None, log="weights")
    with pytest.raises(ValueError, match="log_freq"):
        tbfast.watch(model, None, log_freq=0)
    with pytest.raises(TypeError, match="SummaryWriter"):
        tbfast.watch(model, object())
    with pytest.raises(ValueError, match="requires grad"):
        tbfast.watch(torch.nn.ReLU(), tbfast.SummaryWriter.__new__(tbfast.SummaryWriter))


def test_unwrapped_names():
    assert unwrapped_name("module.fc.weight") == "fc.weight"
    assert unwrapped_name("_fsdp_wrapped_module.layers.0._fsdp_wrapped_module.w") == "layers.0.w"
    assert unwrapped_name("module._orig_mod.block._checkpoint_wrapped_module.lin.bias") == "block.lin.bias"
    assert unwrapped_name("encoder.module.weight") == "encoder.module.weight"  # a user's own "module"


def test_watch_through_a_torch_writer(tmp_path):
    with TorchWriter(str(tmp_path / "torch")) as ref:
        train(make_model(), 2, ref, ("gradients",), log_freq=2)
    model = make_model()
    with TorchWriter(str(tmp_path / "ours")) as w:
        tbfast.watch(model, w, log_freq=2)
        train(model, 2)
    assert_same_histograms(values_by_tag(tmp_path / "ours"), values_by_tag(tmp_path / "torch"))


DDP_SCRIPT = textwrap.dedent('''
    import copy, os, sys
    import torch, torch.distributed as dist, torch.multiprocessing as mp

    def run(rank, port, logdir):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2)
        import tbfast
        from torch.utils.tensorboard import SummaryWriter
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        ours = tbfast.SummaryWriter(os.path.join(logdir, f"rank{rank}", "ours"))
        ref = SummaryWriter(os.path.join(logdir, f"rank{rank}", "torch"))
        tbfast.watch(ddp, ours, log="all", log_freq=2)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        for step in range(1, 5):
            opt.zero_grad()
            ddp(torch.randn(6, 8, generator=g)).pow(2).mean().backward()
            if step % 2 == 0:  # what the optimizer sees: gradients averaged over ranks
                for name, p in model.named_parameters():
                    ref.add_histogram(f"parameters/{name}", p, step)
                    ref.add_histogram(f"gradients/{name}", p.grad, step)
            opt.step()
        ours.close()
        ref.close()

        # FSDP2: DTensor parameters; each rank logs its local shard after the reduce-scatter
        from torch.distributed.fsdp import fully_shard
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        fully_shard(model[0])
        fully_shard(model)
        ours = tbfast.SummaryWriter(os.path.join(logdir, f"rank{rank}", "ours_fsdp"))
        ref = SummaryWriter(os.path.join(logdir, f"rank{rank}", "torch_fsdp"))
        tbfast.watch(model, ours, log="all", log_freq=1)
        model(torch.randn(6, 8, generator=g)).pow(2).mean().backward()
        for name, p in model.named_parameters():
            ref.add_histogram(f"parameters/{name}", p.to_local(), 1)
            ref.add_histogram(f"gradients/{name}", p.grad.to_local(), 1)
        ours.close()
        ref.close()

        # FSDP2 with group=True: histograms of the full tensors, written by rank 0 only
        tbfast.unwatch(model)
        ours = tbfast.SummaryWriter(os.path.join(logdir, "full", "ours")) if rank == 0 else None
        ref = SummaryWriter(os.path.join(logdir, "full", "torch")) if rank == 0 else None
        tbfast.watch(model, ours, log="all", log_freq=1, group=True)
        model.zero_grad()
        model(torch.randn(6, 8, generator=g)).pow(2).mean().backward()
        for name, p in model.named_parameters():
            full_p, full_g = p.full_tensor(), p.grad.full_tensor()  # collectives: every rank
            if rank == 0:
                ref.add_histogram(f"parameters/{name}", full_p, 1)
                ref.add_histogram(f"gradients/{name}", full_g, 1)
        if rank == 0:
            ours.close()
            ref.close()

        # FSDP1, both use_orig_params modes: gradients land in FlatParameters (never in the
        # original parameters); logged per original parameter, each rank its pieces or,
        # with group=True, the full tensors written by rank 0. Unit sizes 40 and 15.
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from tbfast.watch import unwrapped_name
        torch.manual_seed(0)
        plain = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3, bias=False))
        init = copy.deepcopy(plain)
        x = torch.randn(6, 7, generator=torch.Generator().manual_seed(5))  # the same batch on every rank
        plain(x).pow(2).mean().backward()  # FSDP1's averaged gradients are these
        full = {n: (p.detach(), p.grad) for n, p in plain.named_parameters()}
        for orig in (True, False):
            for grouped in (False, True):
                model = copy.deepcopy(init)
                model[2] = FSDP(model[2], device_id=torch.device("cpu"), use_orig_params=orig)
                fsdp = FSDP(model, device_id=torch.device("cpu"), use_orig_params=orig)
                where = os.path.join(logdir, f"fsdp1_{orig}", "full" if grouped else f"rank{rank}")
                writes = rank == 0 or not grouped
                ours = tbfast.SummaryWriter(os.path.join(where, "ours")) if writes else None
                ref = SummaryWriter(os.path.join(where, "torch")) if writes else None
                tbfast.watch(fsdp, ours, log="all", log_freq=1, group=True if grouped else None)
                fsdp(x).pow(2).mean().backward()
                tbfast.unwatch(fsdp)
                if grouped and rank == 0:
                    for name, (p, g) in full.items():
                        ref.add_histogram(f"parameters/{name}", p, 1)
                        ref.add_histogram(f"gradients/{name}", g, 1)
                elif not grouped:  # this rank's pieces, from torch's own shard metadata
                    for unit, m in fsdp.named_modules():
                        if getattr(m, "_handle", None) is None:
                            continue
                        meta = m._handle.shard_metadata()
                        for fqn, (start, end) in zip(meta.param_names, meta.param_offsets):
                            name = unwrapped_name(f"{unit}.{fqn}" if unit else fqn)
                            p, g = full[name]
                            ref.add_histogram(f"parameters/{name}", p.reshape(-1)[start:end + 1], 1)
                            ref.add_histogram(f"gradients/{name}", g.reshape(-1)[start:end + 1], 1)
                if writes:
                    ours.close()
                    ref.close()
        dist.barrier()  # both ranks done before the group goes away (gloo aborts a rank torn down early)
        dist.destroy_process_group()
        # Every writer is closed. Skip interpreter finalization: torch's gloo objects still
        # referenced by DeviceMesh/FSDP caches are destroyed there, and that aborted rank 1
        # once in about 20 runs ("terminate called without an active exception", after
        # every event file of this script was written).
        os._exit(0)

    if __name__ == "__main__":
        mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
''')


def test_watch_ddp_fsdp2_and_fsdp1_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp_watch.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", TBFAST_NUM_THREADS="1")
    returncode, _, stderr = run_bounded([sys.executable, str(script), str(free_port()),
                                                  str(tmp_path / "logs")], timeout=180, env=env)
    assert returncode == 0, stderr[-3000:]
    runs = {r: (values_by_tag(tmp_path / "logs" / f"rank{r}" / "ours"),
                values_by_tag(tmp_path / "logs" / f"rank{r}" / "torch")) for r in (0, 1)}
    for ours, theirs in runs.values():
        assert_same_histograms(ours, theirs)  # names without DDP's "module."
        assert "gradients/0.weight" in ours and [s for s, _ in ours["gradients/0.weight"]] == [2, 4]
    # the ranks saw different data, so equal gradients mean they were logged after the all-reduce
    g0, g1 = runs[0][0]["gradients/2.weight"], runs[1][0]["gradients/2.weight"]
    assert [v.histo.SerializeToString() for _, v in g0] == [v.histo.SerializeToString() for _, v in g1]
    for r in (0, 1):
        ours = values_by_tag(tmp_path / "logs" / f"rank{r}" / "ours_fsdp")
        assert_same_histograms(ours, values_by_tag(tmp_path / "logs" / f"rank{r}" / "torch_fsdp"))
        assert len(ours) == 8
    full = values_by_tag(tmp_path / "logs" / "full" / "ours")
    assert_same_histograms(full, values_by_tag(tmp_path / "logs" / "full" / "torch"))
    assert len(full) == 8 and full["parameters/0.weight"][0][1].histo.num == 16 * 8
    # FSDP1: the hook sits on the FlatParameter that receives the gradients, so every mode logs
    params = {"0.weight": 35, "0.bias": 5, "2.weight": 15}
    tags = sorted(f"{kind}/{name}" for name in params for kind in ("parameters", "gradients"))
    for orig in (True, False):
        logs = tmp_path / "logs" / f"fsdp1_{orig}"
        full = values_by_tag(logs / "full" / "ours")
        assert sorted(full) == tags, orig  # the model's names, not _flat_param
        assert_same_histograms(full, values_by_tag(logs / "full" / "torch"))
        assert {t: full[t][0][1].histo.num for t in tags} == {t: params[t.split("/")[1]] for t in tags}  # no padding
        for r in (0, 1):
            ours = values_by_tag(logs / f"rank{r}" / "ours")
            assert ours and set(ours) <= set(tags), (orig, r)
            assert_same_histograms(ours, values_by_tag(logs / f"rank{r}" / "torch"))


class CountingWriter:
    """A writer stub that counts the histogram calls watch makes."""

    def __init__(self):
        self.calls = 0

    def add_histograms(self, named, global_step, **kwargs):
        self.calls += 1


def test_no_histogram_work_on_steps_it_does_not_log(monkeypatch):
    import tbfast.histogram_logging as histogram_logging

    collected = []
    collect = histogram_logging.module_named_tensors
    monkeypatch.setattr(histogram_logging, "module_named_tensors",
                        lambda *a, **k: collected.append(1) or collect(*a, **k))
    model, writer = make_model(), CountingWriter()
    handle = tbfast.watch(model, writer, log="all", log_freq=4)
    g = torch.Generator().manual_seed(1)
    for step in range(1, 5):
        model(torch.randn(5, 6, generator=g)).pow(2).mean().backward()
        assert handle.steps == step
        assert (writer.calls, len(collected)) == ((0, 0) if step < 4 else (1, 1)), step
