"""tbfast.watch / unwatch: parameter and gradient histograms every log_freq backward
passes, against torch's writer's add_histogram of the same tensors at the same steps."""

import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbfast
from tbfast.watch import unwrapped_name

from conftest import values_by_tag


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
    import os, sys
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
        dist.barrier()  # both ranks done before the group goes away (gloo aborts a rank torn down early)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_ddp_and_fsdp2_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp_watch.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", TBFAST_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(script), str(free_port()), str(tmp_path / "logs")], env=env,
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
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
