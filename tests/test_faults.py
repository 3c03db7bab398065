"""Fault injection: tbfast must never take the training job down, hang it, or lose data
without a word.

Every case runs in its own interpreter (``run_case``) with a timeout, so a crash
(segfault, abort, glibc exit) or a hang is a test failure with the child's output, not a
dead test run. Classes covered: native failures (memory limits, thread-start failures,
huge bin counts), memory a tensor does not own (truncated storage, contiguous or not;
subclasses, functorch wrappers, nested tensors), torch.compile, a writer thread that
fails, fork while logging, a deleted log dir, values out of range (steps, walltimes,
add_scalars keys), SIGKILL mid-write, a full filesystem, and more than 2^31 elements.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import run_bounded
from tbfast.event_file import read_events, read_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_case(code, timeout=60, env=None, returncode=0, prelude=""):
    """Runs ``prelude`` + ``code`` (dedented) as ``sys.executable -c`` in the repo root, in
    a session of its own. Fails the test, with the child's output, when it is killed by a
    signal, runs past ``timeout`` seconds (its whole process group is killed) or exits
    with another code than ``returncode``. Returns (stdout, stderr)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    script = prelude + textwrap.dedent(code)
    rc, out, err = run_bounded([sys.executable, "-c", script], timeout, env=full_env, cwd=ROOT)
    if rc < 0:
        pytest.fail(f"crash: killed by signal {-rc}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}")
    assert rc == returncode, f"exit code {rc}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
    return out, err


def event_files(logdir):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs if "tfevents" in f)


def steps_by_tag(paths):
    """{tag: [step, ...]} over the events of ``paths``, every record's CRC checked."""
    out = {}
    for path in paths:
        for e in read_events(path):
            for v in e.summary.value:
                out.setdefault(v.tag, []).append(e.step)
    return out


BREAK_WRITES = """
def break_writes(event_file_writer, exc):
    \"\"\"Make the writer thread's file raise ``exc`` on every write (flush, fileno and
    close still reach the real file).\"\"\"
    real = event_file_writer._worker._file

    class Broken:
        def write(self, data):
            raise exc
        def flush(self):
            real.flush()
        def fileno(self):
            return real.fileno()
        def close(self):
            real.close()

    event_file_writer._worker._file = Broken()
"""


VMSIZE = """
def vmsize():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1]) * 1024
"""

# --- native code: no abort ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["histogram", "histogram_bf16", "pr_curve", "image_grid", "png"])
def test_memory_and_thread_limits_never_abort(op):
    """Address-space limits from far below to above what is mapped, with 32 threads asked
    for: the kernel either gives the exact result (fewer threads when some cannot start)
    or raises MemoryError. Without the fixes: std::terminate when a thread fails to start
    (SIGABRT), and glibc's exit (status 127) when a PNG worker thread allocated and the
    allocation failed (libstdc++ throws even inside a nothrow new, and the exception needs
    thread-local memory the worker cannot get). Each op in a fresh process: the fewer
    arenas and cached thread stacks already mapped, the more allocations fail."""
    out, _ = run_case(prelude=VMSIZE, code="""
        import collections, resource, sys
        import numpy as np, torch, tbfast
        rng = np.random.default_rng(0)
        x = rng.standard_normal(1 << 21).astype(np.float32)
        xb = torch.from_numpy(x).bfloat16()  # the pattern path (per-thread pattern counters)
        labels = rng.random(1 << 20) > 0.5
        preds = rng.random(1 << 20).astype(np.float32)
        imgs = torch.rand(128, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # 6 MiB: 6 threads
        pix = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
        f = {
            "histogram": lambda: np.asarray(tbfast.histogram(x).counts).tobytes(),
            "histogram_bf16": lambda: np.asarray(tbfast.histogram(xb).counts).tobytes() + repr(
                tbfast.histogram(xb).stats.tolist()).encode(),
            "pr_curve": lambda: np.asarray(tbfast.pr_curve(labels, preds, 127).data).tobytes(),
            "image_grid": lambda: np.asarray(tbfast.image_grid(imgs)).tobytes(),
            "png": lambda: tbfast.encode_png(pix),
        }[OP]
        ref = f()
        seen = collections.Counter()
        for mb in [m + k for k in (0, 2, 4) for m in range(-300, 300, 6)]:
            base = vmsize()
            resource.setrlimit(resource.RLIMIT_AS, (max(base + mb * (1 << 20), 1 << 20), resource.RLIM_INFINITY))
            try:
                res = "ok" if f() == ref else "WRONG"
            except MemoryError:
                res = "MemoryError"
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            seen[res] += 1
        print(dict(seen))
        assert "WRONG" not in seen, seen
        assert f() == ref  # still fine afterwards
    """.replace("OP", repr(op)), timeout=180, env={"TBFAST_NUM_THREADS": "32"})
    assert "ok" in out


def test_late_worker_threads_never_touch_a_finished_call():
    """A kernel returns once every item has run, without waiting for worker threads that
    start too late to take one (csrc/cpu/parallel.h): those exit without touching the
    call's state. Four Python threads make 150 calls each of every CPU kernel, 16 threads
    asked for, tensors sized for 8-16 of them and kernels of a few ms or less, so most
    calls leave workers behind. Every result must be exact (bytes equal to the first
    call's) and the process must not crash."""
    out, _ = run_case(code="""
        import threading
        import numpy as np, torch, tbfast
        rng = np.random.default_rng(1)
        x = torch.from_numpy(rng.standard_normal(1 << 22).astype(np.float32))
        xb = x.bfloat16()
        labels = rng.random(1 << 21) > 0.5
        preds = rng.random(1 << 21).astype(np.float32)
        imgs = torch.rand(128, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        ops = [
            lambda: np.asarray(tbfast.histogram(x).counts).tobytes(),
            lambda: repr(tbfast.histogram(xb, bins=50).stats.tolist()),
            lambda: np.asarray(tbfast.pr_curve(labels, preds, 127).data).tobytes(),
            lambda: np.asarray(tbfast.image_grid(imgs)).tobytes(),
        ]
        want = [f() for f in ops]
        bad = []
        def run(k):
            for i in range(150):
                j = (i + k) % len(ops)
                if ops[j]() != want[j]:
                    bad.append(j)
        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("bad", bad)
        assert not bad
    """, timeout=240, env={"TBFAST_NUM_THREADS": "16"})
    assert "bad []" in out


def test_huge_bin_counts_run_on_fewer_threads_or_raise_memory_error():
    """Per-thread scratch is capped (256 MiB in all): 3e7 bins asked for on 2 threads fit
    a limit that only one thread's scratch fits, and give exact counts (without the cap:
    MemoryError). Scratch that does not fit even once is a MemoryError saying what it
    needed; an output that does not fit is NumPy's MemoryError; the process lives on."""
    out, _ = run_case(prelude=VMSIZE, code="""
        import resource
        import numpy as np, tbfast
        from tbfast import _dtypes, _native

        mod = _native.cpu()[0]
        x = np.arange(200000, dtype=np.float64)  # 4 chunks: the chunk count does not cap the threads

        def native_histogram(bins, counts):
            stats, nonfinite = np.zeros(4), np.zeros(3, np.int64)
            data = np.array([x.ctypes.data], np.uint64)
            numels, dtypes = np.array([x.size], np.int64), np.array([_dtypes.code_of(x.dtype)], np.int32)
            ranges = np.array([0.0, float(x.size)])
            mod.histogram(num_tensors=1, data=data.ctypes.data, numels=numels.ctypes.data,
                          dtypes=dtypes.ctypes.data, mode=mod.HIST_UNIFORM, num_bins=bins, edges=0, lookup=0,
                          ranges=ranges.ctypes.data, counts=counts.ctypes.data, stats=stats.ctypes.data,
                          nonfinite=nonfinite.ctypes.data, stats_only=False, with_stats=True, num_threads=2)

        def limited(extra, fn):
            base = vmsize()
            resource.setrlimit(resource.RLIMIT_AS, (base + extra, resource.RLIM_INFINITY))
            try:
                return fn()
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

        bins = 30_000_000  # 240 MB of scratch per thread: one fits 400 MB, two do not
        counts = np.zeros(bins, np.int64)
        limited(400 << 20, lambda: native_histogram(bins, counts))
        assert (counts == np.histogram(x, bins=bins, range=(0, x.size))[0]).all()
        print("fallback ok")

        counts = np.zeros(200_000_000, np.int64)  # 1.6 GB of scratch for one thread
        try:
            limited(400 << 20, lambda: native_histogram(counts.size, counts))
            raise AssertionError("no MemoryError")
        except MemoryError as exc:
            assert "200000000 bins" in str(exc), exc
            print("scratch:", exc)
        del counts

        for bins in (10**9, 10**8):
            try:
                limited(1 << 30, lambda: tbfast.histogram(x, bins=bins))
                print(bins, "ok")
            except MemoryError as exc:
                print(bins, "MemoryError:", exc)
        assert int(np.asarray(tbfast.histogram(x, bins=10).counts).sum()) == x.size
    """, timeout=180)
    assert "fallback ok" in out and "scratch:" in out


# --- memory a tensor does not own -----------------------------------------------------------

INPUT_KINDS = """
import socket
import torch
import torch.utils._pytree as pytree


class Wrapped(torch.Tensor):
    # A __torch_dispatch__ wrapper (like DTensor): its data_ptr() is not its data, and
    # every op on it gives a Wrapped again.
    @staticmethod
    def __new__(cls, elem):
        return torch.Tensor._make_wrapper_subclass(cls, elem.shape, dtype=elem.dtype, device=elem.device,
                                                   strides=elem.stride(), storage_offset=elem.storage_offset())

    def __init__(self, elem):
        self.elem = elem

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        unwrap = lambda x: x.elem if isinstance(x, Wrapped) else x
        wrap = lambda x: Wrapped(x) if isinstance(x, torch.Tensor) and not isinstance(x, Wrapped) else x
        return pytree.tree_map(wrap, func(*pytree.tree_map(unwrap, args), **pytree.tree_map(unwrap, kwargs or {})))


def make(kind, shape, dtype=torch.float32):
    n = 1
    for s in shape:
        n *= s
    if kind == "resized":
        t = torch.rand(shape).to(dtype)
        t.untyped_storage().resize_(0)
        return t
    if kind == "view_past_storage":
        base = torch.rand(2 * n).to(dtype)
        view = base[n:].view(shape)
        base.untyped_storage().resize_(n // 2 * base.element_size())
        return view
    if kind.startswith("truncated_"):
        # A view that is not C-contiguous (so a copy or a flat view would be made from it),
        # over a storage cut to half of what it addresses: the check must run on the view
        # as given, before anything reads it.
        dims = list(range(len(shape)))
        if kind == "truncated_transposed":  # the last two dims swapped
            base = torch.rand(shape[:-2] + shape[-1:] + shape[-2:-1]).to(dtype)
            view = base.transpose(-1, -2)
        elif kind == "truncated_permuted":  # the first dim last in memory (channels-last like)
            base = torch.rand(shape[1:] + shape[:1]).to(dtype)
            view = base.permute([len(shape) - 1] + dims[:-1])
        elif kind == "truncated_gappy":  # every other element of the last dim
            base = torch.rand(shape[:-1] + (2 * shape[-1],)).to(dtype)
            view = base[..., ::2]
        elif kind == "truncated_offset":  # a column slice: storage offset and row gaps
            base = torch.rand(shape[:-1] + (shape[-1] + 1,)).to(dtype)
            view = base[..., 1:]
        else:
            raise ValueError(kind)
        assert tuple(view.shape) == tuple(shape) and not view.is_contiguous(), (kind, view.shape)
        base.untyped_storage().resize_(n // 2 * base.element_size())
        return view
    if kind == "fake":
        from torch._subclasses.fake_tensor import FakeTensorMode
        with FakeTensorMode():
            return torch.rand(shape).to(dtype)
    if kind == "functional":
        from torch._subclasses.functional_tensor import FunctionalTensor, FunctionalTensorMode
        with FunctionalTensorMode():
            return FunctionalTensor.to_functional(torch.rand(shape).to(dtype))
    if kind == "dispatch_subclass":
        return Wrapped(torch.rand(shape).to(dtype))
    if kind in ("nested_strided", "nested_jagged"):
        layout = torch.strided if kind == "nested_strided" else torch.jagged
        parts = [torch.rand(shape[1:]).to(dtype) for _ in range(shape[0])]
        return torch.nested.nested_tensor(parts, layout=layout)
    if kind == "dtensor":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Replicate, distribute_tensor
        return distribute_tensor(torch.rand(shape).to(dtype), init_device_mesh("cpu", (1,)), [Replicate()])
    raise ValueError(kind)


def init_one_process_group():
    import torch.distributed as dist
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
"""

# kind -> (exception type, text the message must contain)
TRUNCATED = "is smaller than its sizes"
EXPECTED = {
    "resized": ("ValueError", TRUNCATED),
    "view_past_storage": ("ValueError", TRUNCATED),
    "truncated_transposed": ("ValueError", TRUNCATED),
    "truncated_permuted": ("ValueError", TRUNCATED),
    "truncated_gappy": ("ValueError", TRUNCATED),
    "truncated_offset": ("ValueError", TRUNCATED),
    "fake": ("TypeError", "FakeTensor"),
    "functional": ("TypeError", "FunctionalTensor"),
    "dispatch_subclass": ("TypeError", "Wrapped"),
    "nested_strided": ("TypeError", "nested tensor (layout torch.strided)"),
    "nested_jagged": ("TypeError", "nested tensor (layout torch.jagged)"),
    "dtensor": ("TypeError", "DTensor"),
}


def test_tensors_whose_memory_tbfast_cannot_read_are_rejected_by_name():
    """Resized-away storage, a view past its storage, truncated views that are not
    contiguous (transposed, permuted, gappy, offset), fake, functional, DTensor, another
    __torch_dispatch__ wrapper and nested tensors (both layouts), through every op and
    writer method that takes tensors: a TypeError/ValueError naming the type, layout or
    storage, never a segfault, garbage written or a torch internal error (nested PR-curve,
    PNG and sprite input gave "NestedTensorImpl doesn't support sizes"; truncated views
    that are not contiguous were copied before the storage check: garbage PR curves and
    PNGs, torch's setStorage error from histogram)."""
    out, _ = run_case(prelude=INPUT_KINDS, code="""
        import json, tempfile
        import tbfast
        try:
            init_one_process_group()
            kinds = list(KINDS)
        except Exception as exc:  # no gloo here: DTensor cannot be built
            print("no dtensor:", exc)
            kinds = [k for k in KINDS if k != "dtensor"]
        w = tbfast.SummaryWriter(tempfile.mkdtemp())
        labels = torch.rand(2, 8) > 0.5
        img = lambda k: make(k, (3, 4, 4)) if not k.startswith("nested") else make(k, (2, 3, 4, 4))
        calls = {
            "histogram": lambda k: tbfast.histogram(make(k, (2, 8))),
            "histograms": lambda k: tbfast.histograms({"a": make(k, (2, 8))}),
            "pr_curve(predictions)": lambda k: tbfast.pr_curve(labels, make(k, (2, 8))),
            "pr_curve(labels)": lambda k: tbfast.pr_curve(make(k, (2, 8), torch.bool), torch.rand(2, 8)),
            "image_grid": lambda k: tbfast.image_grid(make(k, (2, 3, 4, 4))),
            "add_histogram": lambda k: w.add_histogram("h", make(k, (2, 8)), 1),
            "add_histograms": lambda k: w.add_histograms({"h": make(k, (2, 8))}, 1),
            "add_pr_curve": lambda k: w.add_pr_curve("p", labels, make(k, (2, 8)), 1),
            "add_pr_curves": lambda k: w.add_pr_curves("c", torch.tensor([0, 1]), make(k, (2, 2)), 1),
            "add_image": lambda k: w.add_image("i", img(k), 1),
            "add_images": lambda k: w.add_images("i", make(k, (2, 3, 4, 4)), 1),
            "add_image_grid": lambda k: w.add_image_grid("i", make(k, (2, 3, 4, 4)), 1),
            "accumulator.update": lambda k: tbfast.PRCurveAccumulator(11).update(make(k, (2, 8)), labels),
            "encode_png": lambda k: tbfast.encode_png(make(k, (4, 4, 3), torch.uint8)),
            "encode_png(HW)": lambda k: tbfast.encode_png(make(k, (4, 6), torch.uint8)),
            "add_embedding(label_img)": lambda k: w.add_embedding(torch.rand(2, 3), label_img=make(k, (2, 3, 4, 4)),
                                                                  tag="l" + k),
            "add_embedding(mat)": lambda k: w.add_embedding(make(k, (2, 3)), tag="m" + k),
        }
        for k in kinds:
            for name, f in calls.items():
                try:
                    f(k)
                    w.flush()
                    r = ("accepted", "")
                except Exception as exc:
                    r = (type(exc).__name__, str(exc))
                print(json.dumps([k, name, *r]))
        w.close()
    """.replace("KINDS", repr(list(EXPECTED))), timeout=180)
    import json

    rows = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
    assert len({r[0] for r in rows}) >= len(EXPECTED) - 1 and rows
    bad = [r for r in rows if r[2] != EXPECTED[r[0]][0] or EXPECTED[r[0]][1] not in r[3]]
    assert not bad, "\n".join(map(str, bad))


def test_large_truncated_views_raise_instead_of_crashing():
    """The audit's reproducers: large truncated tensors that are not contiguous. The
    compacting copy (or host copy, or sprite conversion) ran before the storage check
    and read 64-200 MB of freed memory: each of these died with SIGSEGV. Now every one
    is a ValueError naming the argument, in one process that lives on."""
    out, _ = run_case("""
        import tempfile
        import torch
        import tbfast

        def trunc(t, nbytes=8):
            t.untyped_storage().resize_(nbytes)
            return t

        w = tbfast.SummaryWriter(tempfile.mkdtemp())
        big = lambda: torch.rand(4096, 4096)
        calls = {
            "pr_curve": ("predictions", lambda: tbfast.pr_curve(big() > 0.5, trunc(big().T))),
            "add_pr_curve": ("predictions", lambda: w.add_pr_curve("p", big() > 0.5, trunc(big().T), 1)),
            "add_pr_curves": ("predictions", lambda: w.add_pr_curves("c", torch.zeros(4096, dtype=torch.long),
                                                                     trunc(big().T), 1)),
            "accumulator.update": ("predictions", lambda: tbfast.PRCurveAccumulator(num_thresholds=11, num_classes=4096)
                                   .update(trunc(big().T), torch.zeros(4096, dtype=torch.long))),
            "histogram": ("values", lambda: tbfast.histogram(trunc(torch.rand(4096, 8192)[:, ::2]))),
            "add_histogram": ("values", lambda: w.add_histogram("h", trunc(torch.rand(4096, 8192)[:, ::2]), 1)),
            "histograms": ("'a'", lambda: tbfast.histograms({"a": trunc(torch.rand(4096, 8192)[:, ::2])})),
            "histogram(T)": ("values", lambda: tbfast.histogram(trunc(big().T))),
            "encode_png": ("image", lambda: tbfast.encode_png(
                trunc(torch.randint(0, 255, (4096, 4096, 3), dtype=torch.uint8), 16))),
            "encode_png(permuted)": ("image", lambda: tbfast.encode_png(
                trunc(torch.randint(0, 255, (3, 2048, 2048), dtype=torch.uint8).permute(1, 2, 0), 16))),
            "encode_png(empty storage)": ("image", lambda: tbfast.encode_png(
                trunc(torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8), 0))),
            "add_embedding": ("label_img", lambda: w.add_embedding(torch.randn(64, 3),
                                                                   label_img=trunc(torch.rand(64, 3, 256, 256)))),
        }
        for name, (arg, f) in calls.items():
            try:
                f()
                raise AssertionError(f"{name} accepted a truncated storage")
            except ValueError as exc:
                assert arg in str(exc) and "is smaller than its sizes" in str(exc), (name, exc)
            print("raised", name, flush=True)
        w.close()
    """, timeout=300)
    assert out.count("raised") == 12, out


def test_functorch_wrappers_are_rejected_by_name():
    """Inside torch.vmap and torch.func.grad, tensors are functorch wrappers whose type is
    plain torch.Tensor but which have no storage: torch's "Cannot access data pointer"
    came out of every op. Now a TypeError naming the wrapper and the transform."""
    out, _ = run_case("""
        import tempfile
        import torch
        import tbfast

        w = tbfast.SummaryWriter(tempfile.mkdtemp())
        seen = []

        def body(x):  # x: [3, 4, 4] inside the transform
            calls = {
                "histogram": lambda: tbfast.histogram(x),
                "histograms": lambda: tbfast.histograms({"a": x}),
                "pr_curve": lambda: tbfast.pr_curve(torch.ones(3, 4, 4) > 0, x),
                "accumulator.update": lambda: tbfast.PRCurveAccumulator(11).update(x, torch.ones(3, 4, 4) > 0),
                "image_grid": lambda: tbfast.image_grid(x, dataformats="CHW"),
                "encode_png": lambda: tbfast.encode_png(x.permute(1, 2, 0).to(torch.uint8)),
                "add_histogram": lambda: w.add_histogram("h", x, 1),
                "add_image": lambda: w.add_image("i", x, 1),
                "add_embedding": lambda: w.add_embedding(torch.ones(1, 2), label_img=x[None], tag="e"),
            }
            for name, f in calls.items():
                try:
                    f()
                    seen.append((name, "accepted"))
                except TypeError as exc:
                    seen.append((name, str(exc)))
            return x.sum()

        torch.vmap(body)(torch.rand(2, 3, 4, 4))
        torch.func.grad(body)(torch.rand(3, 4, 4))
        w.close()
        assert len(seen) == 18, seen
        for (name, msg), kind in zip(seen, ["BatchedTensor (inside torch.vmap)"] * 9 + ["GradTrackingTensor"] * 9):
            assert "functorch " + kind in msg, (name, msg)
        print("ok")
    """, timeout=120)
    assert "ok" in out


def test_entry_points_run_eagerly_under_torch_compile():
    """torch.compile used to trace tbfast's NumPy code: Dynamo's stand-ins reached the
    native kernel as pointers to freed temporaries ("ValueError: invalid dtype code", or
    worse). The entry points are excluded from tracing (a graph break) and give exactly
    the eager results; ``import tbfast`` still does not import torch."""
    out, _ = run_case("""
        import sys
        import numpy as np
        import tbfast
        assert "torch" not in sys.modules  # the decorator is lazy
        assert int(np.asarray(tbfast.histogram(np.arange(10.0), bins=2).counts).sum()) == 10
        import torch

        x = torch.randn(10000, generator=torch.Generator().manual_seed(0))
        imgs = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        probs = torch.sigmoid(x)
        hist = lambda r: (np.asarray(r.counts), np.asarray(r.limits), r.min, r.max, r.sum, r.sum_squares)
        checks = {
            "histogram": (lambda x: tbfast.histogram(x), hist),
            "histogram(bins=4)": (lambda x: tbfast.histogram(x, bins=4), hist),
            "histograms": (lambda x: tbfast.histograms({"a": x, "b": x * 2}, bins=7)["b"], hist),
            "pr_curve": (lambda x: tbfast.pr_curve(x > 0, torch.sigmoid(x), 33), lambda r: r.data),
            "accumulator.update": (lambda x: tbfast.PRCurveAccumulator(17).update(torch.sigmoid(x), x > 0).compute(),
                                   lambda r: r.data),
            "image_grid": (lambda x: tbfast.image_grid(imgs * x[:1].abs(), nrow=3), lambda r: r.numpy()),
            "encode_png": (lambda x: tbfast.encode_png((imgs[0].permute(1, 2, 0) * 255).to(torch.uint8)), bytes),
        }
        for name, (f, key) in checks.items():
            eager = key(f(x))
            compiled = key(torch.compile(f, backend="eager")(x))
            same = all(np.array_equal(a, b) for a, b in zip(eager, compiled)) if isinstance(eager, tuple) else \
                np.array_equal(eager, compiled) if isinstance(eager, np.ndarray) else eager == compiled
            assert same, (name, eager, compiled)
            print("equal", name, flush=True)

        @torch.compile(backend="eager")
        def step(x):  # tbfast inside a compiled function that does more
            y = x * 2
            h = tbfast.histogram(y, bins=4)
            return y.sum(), h

        total, h = step(x)
        assert np.array_equal(np.asarray(h.counts), np.asarray(tbfast.histogram(x * 2, bins=4).counts))
        print("equal step")
    """, timeout=300)
    assert out.count("equal") == 8, out


def test_methods_made_by_torchs_packers_check_storage_first(tmp_path):
    """add_tensor segfaulted, and add_audio / add_mesh / add_image_with_boxes / add_video
    wrote garbage read past the storage, for a truncated tensor: their output is made by
    torch's own packers, which read the memory unchecked; so did one-element tensors in
    add_scalar, add_scalars' and add_hparams' dicts (.item()). Every writer method now
    checks its tensor arguments' storage on entry (list items and dict values too), naming
    the parameter."""
    out, _ = run_case(f"""
        import torch
        import tbfast

        def trunc(t):
            t.untyped_storage().resize_(4)
            return t

        def trunc0(t):
            t.untyped_storage().resize_(0)
            return t

        w = tbfast.SummaryWriter({str(tmp_path)!r})
        calls = {{
            "tensor": lambda: w.add_tensor("t", trunc(torch.rand(1000, 1000))),
            "snd_tensor": lambda: w.add_audio("a", trunc(torch.rand(1, 100000)), 1),
            "vertices": lambda: w.add_mesh("m", trunc(torch.rand(1, 100000, 3))),
            "faces": lambda: w.add_mesh("m", torch.rand(1, 3, 3), faces=trunc(torch.zeros(1, 100000, 3, dtype=torch.int32))),
            "img_tensor": lambda: w.add_image_with_boxes("b", trunc(torch.rand(3, 512, 512)), torch.tensor([[1.0, 1, 5, 5]])),
            "box_tensor": lambda: w.add_image_with_boxes("b", torch.rand(3, 8, 8), trunc(torch.rand(100000, 4))),
            "vid_tensor": lambda: w.add_video("v", trunc(torch.rand(1, 4, 3, 64, 64))),
            "values": lambda: w.add_histogram("h", trunc(torch.rand(1000, 1000).T), 1),
            "scalar_value": lambda: w.add_scalar("s", trunc0(torch.rand(())), 1),
            "tag_scalar_dict['a']": lambda: w.add_scalars("g", {{"a": trunc0(torch.rand(()))}}, 1),
            "hparam_dict['lr']": lambda: w.add_hparams({{"lr": trunc0(torch.rand(()))}}, {{"m": 1.0}}),
            "metric_dict['m']": lambda: w.add_hparams({{"lr": 0.1}}, {{"m": trunc0(torch.rand(()))}}),
        }}
        for name, call in calls.items():
            try:
                call()
                raise AssertionError(f"{{name}}: no error")
            except ValueError as exc:
                assert str(exc).startswith(name + ": its storage"), (name, exc)
            print("refused", name, flush=True)
        w.add_scalar("after", 1.0, 0)
        w.close()
    """, timeout=120)
    assert out.count("refused") == 12, out


def test_writer_methods_run_eagerly_under_torch_compile(tmp_path):
    """The writers' add_* methods call the kernels themselves, not through the public
    entry points: traced by Dynamo they hit the same freed-temporary pointers. Every
    add_* method of tbfast's writer and of the sink accelerate() installs runs eagerly:
    a compiled training step that logs writes what the eager step writes."""
    out, _ = run_case(f"""
        import os
        import numpy as np
        import torch
        import tbfast
        from conftest import event_values

        x = torch.randn(10000, generator=torch.Generator().manual_seed(0))
        imgs = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        labels = torch.randint(0, 3, (10000,), generator=torch.Generator().manual_seed(2))

        def log(w, x):
            w.add_histogram("h", x, 1)
            w.add_histogram("h4", x, 1, bins=4)
            w.add_pr_curve("p", x > 0, torch.sigmoid(x), 1)
            if hasattr(w, "add_histograms"):  # tbfast's own writer
                w.add_histograms({{"a": x, "b": x * 2}}, 1, bins=7)
                w.add_pr_curves("pc", labels, torch.stack([x, -x, x * 2], 1), 1, logits=True)
            w.add_images("i", imgs * x[:1].abs().clamp(max=1), 1)
            return x.sum()

        def values(d):
            return sorted((v.tag, s, v.SerializeToString()) for s, v in event_values(d))

        root = {str(tmp_path)!r}
        for make in ("tbfast", "accelerate"):
            logs = []
            for mode in ("eager", "compiled"):
                d = os.path.join(root, make, mode)
                if make == "tbfast":
                    w = tbfast.SummaryWriter(d)
                else:
                    from torch.utils.tensorboard import SummaryWriter as TorchWriter
                    w = tbfast.accelerate(TorchWriter(d))
                f = (lambda x: log(w, x)) if mode == "eager" else torch.compile(lambda x: log(w, x), backend="eager")
                f(x)
                w.close()
                logs.append(values(d))
            assert logs[0] == logs[1] and len(logs[0]) == (9 if make == "tbfast" else 4), (make, logs)
            print("equal", make, flush=True)
    """, timeout=300, env=dict(PYTHONPATH=os.path.join(ROOT, "tests")))
    assert out.count("equal") == 2, out


def test_add_scalars_checks_every_key_before_writing(tmp_path):
    """A non-str key in tag_scalar_dict gave "can only concatenate str" after the earlier
    keys were written; now TypeError naming tag_scalar_dict, and nothing written."""
    run_case(f"""
        import os
        import tbfast
        d = {str(tmp_path)!r}
        w = tbfast.SummaryWriter(d)
        for bad in ({{"a": 1.0, 2: 3.0}}, {{"a": 1.0, None: 2.0}}, {{"a": 1.0, b"b": 2.0}}, [("a", 1.0)]):
            try:
                w.add_scalars("m", bad, 1)
                raise AssertionError(f"accepted {{bad!r}}")
            except TypeError as exc:
                assert "tag_scalar_dict" in str(exc), exc
        w.close()
        assert sorted(os.listdir(d)) == [n for n in os.listdir(d) if "tfevents" in n], os.listdir(d)  # no m_a
    """)


def test_non_finite_or_non_numeric_walltime_is_rejected(tmp_path):
    """NaN / inf walltime was written silently by add_scalar and add_scalars (the event
    file's add_event rejects NaN, the scalar fast path bypassed it); 'x' gave a bare
    struct.error. Now ValueError / TypeError naming walltime, and nothing written;
    NumPy and tensor walltimes still work."""
    run_case(f"""
        import math, os
        import numpy as np, torch
        import tbfast
        from tbfast.event_file import read_events
        d = {str(tmp_path)!r}
        w = tbfast.SummaryWriter(d)
        calls = {{
            "add_scalar": lambda t: w.add_scalar("s", 1.0, 1, walltime=t),
            "add_scalar(new_style)": lambda t: w.add_scalar("n", 1.0, 1, walltime=t, new_style=True),
            "add_scalars": lambda t: w.add_scalars("m", {{"a": 1.0}}, 1, walltime=t),
        }}
        for name, f in calls.items():
            for bad, exc_type in ((math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
                                  (np.float32("nan"), ValueError), ("x", TypeError), (b"1", TypeError),
                                  (object(), TypeError)):
                try:
                    f(bad)
                    raise AssertionError(f"{{name}} accepted walltime={{bad!r}}")
                except exc_type as exc:
                    assert "walltime" in str(exc), (name, exc)
        w.add_scalar("ok", 1.0, 1, walltime=np.float64(5.5))
        w.add_scalar("ok", 2.0, 2, walltime=torch.tensor(6.5, dtype=torch.float64))
        w.add_scalars("ok_m", {{"a": 1.0}}, 3, walltime=7)
        w.close()
        events = [e for dp, _, ns in os.walk(d) for n in ns for e in read_events(os.path.join(dp, n))]
        got = sorted((v.tag, e.step, e.wall_time) for e in events for v in e.summary.value)
        assert got == [("ok", 1, 5.5), ("ok", 2, 6.5), ("ok_m", 3, 7.0)], got
    """)


# --- the writer thread ----------------------------------------------------------------------


@pytest.mark.parametrize("flush_secs", ["math.inf", "None", "float('inf')"])
def test_flush_only_when_asked(tmp_path, flush_secs):
    """flush_secs=inf used to kill the writer thread (Condition.wait(inf) overflows) so the
    13th add_scalar blocked forever; inf and None now mean: no timed flush, data reaches
    the file on flush() and close()."""
    run_case(f"""
        import math, os, time
        import tbfast
        from tbfast.event_file import EventFileWriter, read_events
        from tbfast import proto
        ew = EventFileWriter({str(tmp_path / 'ew')!r}, max_queue=10, flush_secs={flush_secs})
        first = os.path.getsize(ew.path)
        for i in range(100):
            ew.add_event(proto.Event(wall_time=1.0, step=i))
        time.sleep(0.5)
        assert os.path.getsize(ew.path) == first  # nothing flushed on a timer
        ew.flush()
        assert [e.step for e in read_events(ew.path)][1:] == list(range(100))
        ew.add_event(proto.Event(wall_time=1.0, step=100))
        ew.close()
        assert [e.step for e in read_events(ew.path)][-1] == 100

        w = tbfast.SummaryWriter({str(tmp_path / 'sw')!r}, max_queue=10, flush_secs={flush_secs})
        for i in range(1000):
            w.add_scalar("loss", float(i), i)
            if i % 50 == 0:
                w.add_text("note", "x" * 10, i)
        w.close()
        (path,) = [os.path.join(w.log_dir, f) for f in os.listdir(w.log_dir)]
        steps = [e.step for e in read_events(path) if e.summary.value and e.summary.value[0].tag == "loss"]
        assert steps == list(range(1000)), steps[:5]
    """, timeout=60)


def test_flush_secs_and_max_queue_are_validated(tmp_path):
    run_case(f"""
        import math, time
        import tbfast
        from tbfast.event_file import EventFileWriter
        d = {str(tmp_path)!r}
        for bad in (0, -1, float("nan"), -math.inf, "1", True, [1]):
            for make in (EventFileWriter, tbfast.SummaryWriter):
                try:
                    make(d, flush_secs=bad)
                except ValueError as exc:
                    assert "flush_secs" in str(exc), exc
                else:
                    raise AssertionError(f"flush_secs={{bad!r}} accepted by {{make.__name__}}")
        for bad in (-1, 1.5, True, "3", None):
            for make in (EventFileWriter, tbfast.SummaryWriter):
                try:
                    make(d, max_queue=bad)
                except ValueError as exc:
                    assert "max_queue" in str(exc), exc
                else:
                    raise AssertionError(f"max_queue={{bad!r}} accepted by {{make.__name__}}")
        # huge but finite: the timed wait must not overflow (it used to kill the thread at
        # the second batch, and flush() then waited forever)
        from tbfast import proto
        w = EventFileWriter(d, max_queue=0, flush_secs=1e300)
        w.add_event(proto.Event(wall_time=1.0, step=1))
        w.flush()
        w.add_event(proto.Event(wall_time=1.0, step=2))
        time.sleep(0.3)
        w.add_event(proto.Event(wall_time=1.0, step=3))
        w.flush()
        w.close()
    """, timeout=30)


def test_summary_writer_closes_after_a_writer_thread_error(tmp_path):
    """An ordinary Exception in the writer thread reached the caller as itself, not as
    the documented RuntimeError with the original as __cause__; and a SummaryWriter with
    buffered scalars could never be closed after it: close() re-raised the error before
    closing anything, and so did every later call. Now close() raises it once and
    closes; the next write starts a new file, which gets the scalars the failed file
    could not take."""
    run_case(prelude=BREAK_WRITES, code=f"""
        import glob
        import os
        import sys
        import time
        sys.path.insert(0, "tests")
        import tbfast
        from conftest import event_values

        d = {str(tmp_path)!r}
        w = tbfast.SummaryWriter(d)
        w.add_scalar("before", 1.0, 0)
        w.flush()
        break_writes(w._file_writer, ValueError("encoder bug"))
        w.add_text("lost", "queued after the failure", 1)
        try:
            w.flush()
            raise AssertionError("no error")
        except RuntimeError as exc:
            assert "writer thread" in str(exc) and isinstance(exc.__cause__, ValueError), repr(exc)
        w.add_scalar("buffered", 2.0, 2)  # accepted: buffered on the caller's side
        try:
            w.close()
            raise AssertionError("close() did not raise")
        except RuntimeError as exc:
            assert isinstance(exc.__cause__, ValueError), repr(exc)
        assert w.file_writer is None  # closed
        time.sleep(4 * tbfast.scalar_logging.SCALAR_LATENCY_S)  # the hand-off thread must not reopen it
        assert w.file_writer is None and len(glob.glob(os.path.join(d, "*tfevents*"))) == 1
        w.close()  # idempotent, quiet
        w.add_scalar("after", 3.0, 3)
        w.close()
        assert len(glob.glob(os.path.join(d, "*tfevents*"))) == 2
        tags = sorted((v.tag, s) for s, v in event_values(d))
        assert tags == [("after", 3), ("before", 0), ("buffered", 2)], tags
        print("ok")
    """, timeout=60)


def test_any_writer_thread_failure_reaches_every_caller(tmp_path):
    """A BaseException (not an Exception) in the writer thread used to end the thread
    silently: flush() and producers on a full queue then waited forever. Now every
    caller gets a RuntimeError (the original as __cause__), blocked producers included,
    and the first close() raises it once."""
    run_case(prelude=BREAK_WRITES, code=f"""
        import threading
        from tbfast import proto
        from tbfast.event_file import EventFileWriter

        class Boom(BaseException):
            pass

        w = EventFileWriter({str(tmp_path)!r}, max_queue=1)
        break_writes(w, Boom("disk controller on fire"))
        outcomes = []

        def produce():
            try:
                for i in range(1000):
                    w.add_event(proto.Event(wall_time=1.0, step=i))
                outcomes.append("no error")
            except RuntimeError as exc:
                outcomes.append(type(exc.__cause__).__name__)

        threads = [threading.Thread(target=produce) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads), "producers blocked on a dead writer"
        assert outcomes == ["Boom"] * 4, outcomes
        for call in (w.flush, lambda: w.add_record(b"x")):
            try:
                call()
                raise AssertionError("no error")
            except RuntimeError as exc:
                assert "writer thread" in str(exc) and isinstance(exc.__cause__, Boom), exc
        try:
            w.close()
            raise AssertionError("close() did not raise")
        except RuntimeError:
            pass
        w.close()  # reported once

        # a deferred record whose packing raises a BaseException: the same
        w = EventFileWriter({str(tmp_path)!r})
        def pack():
            raise SystemExit("packer exited")
        w.add_deferred(pack)
        try:
            w.flush()
            raise AssertionError("no error")
        except RuntimeError as exc:
            assert isinstance(exc.__cause__, SystemExit)
        try:
            w.close()
        except RuntimeError:
            pass
    """, timeout=60)


def test_a_vanished_writer_thread_never_blocks_producers(tmp_path):
    """If the writer thread is gone without having said why, producers on a full queue
    and flush() notice within a second and raise, instead of waiting forever."""
    run_case(f"""
        from tbfast import proto
        from tbfast import event_file
        event_file._Worker._loop = lambda self: None  # the thread ends at once, silently
        w = event_file.EventFileWriter({str(tmp_path)!r}, max_queue=5)
        w._worker._thread.join()
        try:
            for i in range(100):
                w.add_event(proto.Event(wall_time=1.0, step=i))
            raise AssertionError("no error")
        except RuntimeError as exc:
            assert "no longer running" in str(exc), exc
        try:
            w.flush()
            raise AssertionError("no error")
        except RuntimeError:
            pass
    """, timeout=30)


# --- fork -----------------------------------------------------------------------------------


def test_fork_while_every_lock_is_held(tmp_path):
    """A fork while other threads hold tbfast's locks (the event writer's queue lock, the
    file-name counter, the scalar buffer, the PNG pool) and after the PNG pool has
    threads: the child can still use tbfast. The parent's writers raise RuntimeError in
    the child (never write there); new writers and the threaded PNG encoder work. Before
    the fix, the child blocked forever on an inherited held lock or on the parent's pool."""
    run_case(f"""
        import os, signal, threading, time
        import numpy as np
        import tbfast
        from tbfast import event_file, png, proto, scalar_logging
        from tbfast.event_file import EventFileWriter, read_events

        d = {str(tmp_path)!r}
        ew = EventFileWriter(os.path.join(d, "parent_ew"))
        sw = tbfast.SummaryWriter(os.path.join(d, "parent_sw"))
        sw.add_scalar("a", 1.0, 0)
        pix = (np.random.default_rng(0).random((1024, 1024, 3)) * 255).astype(np.uint8)
        ref = tbfast.encode_png(pix, level=6, num_threads=4)  # the zlib path: starts the pool

        locks = [ew._worker._work, event_file._uid_lock, sw._scalar_lock, sw._lock, png._pool_lock,
                 scalar_logging._ticker_lock]
        held, release = threading.Event(), threading.Event()

        def hold():
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait()
            for lock in locks:
                lock.release()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a hang kills the child (SIGALRM): the parent reports it
            status = 0
            try:
                try:
                    ew.add_event(proto.Event(step=1))
                    status = 2
                except RuntimeError:
                    pass
                ew.flush()
                ew.close()
                try:
                    for i in range(300):
                        sw.add_scalar("a", 1.0, i)
                    sw.flush()
                    status = 3
                except RuntimeError:
                    pass
                mine = EventFileWriter(os.path.join(d, "child"))
                for i in range(50):
                    mine.add_event(proto.Event(wall_time=1.0, step=i))
                mine.close()
                if [e.step for e in read_events(mine.path)][1:] != list(range(50)):
                    status = 4
                if tbfast.encode_png(pix, level=6, num_threads=4) != ref:
                    status = 5
                child = tbfast.SummaryWriter(os.path.join(d, "child_sw"))
                child.add_scalar("b", 2.0, 0)
                child.close()
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                status = 6
            os._exit(status)
        deadline = time.monotonic() + 45
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("child hung")
            time.sleep(0.05)
        release.set()
        holder.join()
        assert os.WIFEXITED(status), f"child killed by signal {{os.WTERMSIG(status)}} (SIGALRM = hung)"
        assert os.WEXITSTATUS(status) == 0, f"child status {{os.WEXITSTATUS(status)}}"
        ew.add_event(proto.Event(wall_time=1.0, step=7))
        ew.close()
        sw.close()
        assert [e.step for e in read_events(ew.path)] == [0, 7]
    """, timeout=120)


def test_fork_with_concurrent_logging(tmp_path):
    """Four threads log scalars, histograms, images and text while the main thread forks
    twelve times. Each child logs to its own writer and exits through sys.exit (atexit
    hooks run): none hangs. The parent's files hold every event its threads logged.

    No tensor is drawn from torch's random generator after the threads start: a child
    forked while a parent thread is inside torch.randn inherits the generator's mutex
    locked and deadlocks in its next torch.randn (torch's own behaviour, measured: 9 of
    200 such children hang without tbfast involved). The data is made beforehand."""
    run_case(f"""
        import os, signal, sys, threading, time
        import torch
        import tbfast
        from tbfast.event_file import read_events

        d = {str(tmp_path)!r}
        w = tbfast.SummaryWriter(os.path.join(d, "parent"), max_queue=4, flush_secs=0.05)
        stop = threading.Event()
        counts = {{}}
        hists = [torch.randn(1000) for _ in range(4)]
        images = [torch.rand(3, 64, 64) for _ in range(4)]
        child_hist, child_image = torch.randn(100), torch.rand(3, 8, 8)

        def log(kind):
            i = 0
            while not stop.is_set():
                if kind == "scalar":
                    w.add_scalar("s", float(i), i)
                elif kind == "hist":
                    w.add_histogram("h", hists[i % 4], i)
                elif kind == "image":
                    w.add_image("i", images[i % 4], i)
                else:
                    w.add_text("t", "step %d" % i, i)
                i += 1
            counts[kind] = i

        threads = [threading.Thread(target=log, args=(k,), daemon=True) for k in ("scalar", "hist", "image", "text")]
        for t in threads:
            t.start()
        children = []
        try:
            for n in range(12):
                time.sleep(0.05)
                pid = os.fork()
                if pid == 0:
                    signal.alarm(30)
                    mine = tbfast.SummaryWriter(os.path.join(d, "child%d" % n))
                    for i in range(20):
                        mine.add_scalar("c", float(i), i)
                    mine.add_histogram("h", child_hist, 0)
                    mine.add_image("i", child_image, 0)
                    mine.close()
                    try:
                        w.add_text("from_child", "x", 0)  # the parent's writer: not usable here
                        w.flush()
                        sys.exit(3)
                    except RuntimeError:
                        pass
                    sys.exit(0)
                children.append(pid)
            deadline = time.monotonic() + 60
            for pid in children:
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                    if time.monotonic() > deadline:
                        for p in children:
                            try:
                                os.kill(p, signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                        raise AssertionError("a forked child hung")
                    time.sleep(0.02)
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        finally:
            stop.set()
        for t in threads:
            t.join()
        w.close()
        steps = {{}}
        for name in os.listdir(w.log_dir):
            for e in read_events(os.path.join(w.log_dir, name)):
                for v in e.summary.value:
                    steps.setdefault(v.tag, []).append(e.step)
        for tag, kind in (("s", "scalar"), ("h", "hist"), ("i", "image"), ("t/text_summary", "text")):
            assert sorted(steps[tag]) == list(range(counts[kind])), (tag, len(steps[tag]), counts[kind])
        assert "from_child/text_summary" not in steps
        for n in range(12):
            sub = os.path.join(d, "child%d" % n)
            (name,) = os.listdir(sub)
            got = [e.step for e in read_events(os.path.join(sub, name)) if e.summary.value and e.summary.value[0].tag == "c"]
            assert got == list(range(20)), (n, got)
    """, timeout=180)


# --- no silent loss -------------------------------------------------------------------------


def test_log_dir_deleted_mid_run_is_recreated_with_a_warning(tmp_path):
    """Someone deletes runs/ during the job: the next flush notices, re-creates the
    directory and a new event file (first record included) holding everything logged
    since the last flush, and warns once on stderr. Before the fix every later event
    went to the deleted file, silently."""
    logdir = tmp_path / "runs" / "exp"
    _, err = run_case(f"""
        import os, shutil
        import torch
        import tbfast
        from tbfast.event_file import read_events
        logdir = {str(logdir)!r}
        w = tbfast.SummaryWriter(logdir)
        for i in range(10):
            w.add_scalar("loss", float(i), i)
            w.add_histogram("h", torch.randn(100), i)
        w.flush()
        shutil.rmtree({str(tmp_path / 'runs')!r})
        for i in range(10, 20):
            w.add_scalar("loss", float(i), i)
            w.add_histogram("h", torch.randn(100), i)
        w.flush()
        for i in range(20, 30):
            w.add_scalar("loss", float(i), i)
        w.close()
    """)
    assert "was deleted" in err, err
    (path,) = event_files(logdir)
    events = list(read_events(path))
    assert events[0].file_version == "brain.Event:2"
    steps = steps_by_tag([path])
    assert steps["loss"] == list(range(10, 30))
    assert steps["h"] == list(range(10, 20))


def test_event_file_deleted_between_flushes_keeps_every_event(tmp_path):
    """The file alone deleted, with events written (not yet flushed) both before and after
    the deletion: all of them are in the new file, and ``path`` names it."""
    run_case(f"""
        import os, warnings
        from tbfast import proto
        from tbfast.event_file import EventFileWriter, read_events
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            w = EventFileWriter({str(tmp_path)!r}, flush_secs=1000)
            for i in range(5):
                w.add_event(proto.Event(wall_time=1.0, step=i))
            w.flush()
            old = w.path
            for i in range(5, 10):
                w.add_event(proto.Event(wall_time=1.0, step=i))
            os.remove(old)
            for i in range(10, 15):
                w.add_event(proto.Event(wall_time=1.0, step=i))
            w.close()
        assert w.path != old and os.path.exists(w.path)
        assert [e.step for e in read_events(w.path)] == [0] + list(range(5, 15))
        assert [str(c.message) for c in caught if "was deleted" in str(c.message)], caught
    """)


def test_add_scalars_after_close_opens_new_files(tmp_path):
    """add_scalars follows the writer's lifecycle: after close() the next call opens new
    event files (main run and sub-runs) and loses nothing."""
    run_case(f"""
        import os
        import tbfast
        from tbfast.event_file import read_events
        w = tbfast.SummaryWriter({str(tmp_path)!r})
        w.add_scalars("m", {{"a": 1.0, "b": 2.0}}, 0)
        w.close()
        w.add_scalars("m", {{"a": 3.0, "b": 4.0}}, 1)
        w.close()
        for sub in ("m_a", "m_b"):
            files = sorted(os.listdir(os.path.join({str(tmp_path)!r}, sub)))
            assert len(files) == 2, files
            steps = [[e.step for e in read_events(os.path.join({str(tmp_path)!r}, sub, f)) if e.summary.value]
                     for f in files]
            assert sorted(steps) == [[0], [1]], steps
    """)


# --- values out of range --------------------------------------------------------------------


def test_steps_outside_int64_raise_and_the_limits_round_trip(tmp_path):
    """2**64 used to be written as step 0 and 2**63 as -2**63: every writer method now
    raises ValueError (TypeError for a fractional step), and writes nothing; the int64
    limits themselves are written exactly."""
    run_case(f"""
        import os
        import numpy as np, torch
        import tbfast
        from tbfast.event_file import read_events
        d = {str(tmp_path / 'w')!r}
        w = tbfast.SummaryWriter(d)
        calls = {{
            "add_scalar": lambda s: w.add_scalar("a", 1.0, s),
            "add_scalars": lambda s: w.add_scalars("m", {{"x": 1.0}}, s),
            "add_text": lambda s: w.add_text("t", "x", s),
            "add_histogram": lambda s: w.add_histogram("h", torch.randn(10), s),
            "add_histograms": lambda s: w.add_histograms({{"hs": torch.randn(10)}}, s),
            "add_histogram_raw": lambda s: w.add_histogram_raw("r", 0, 1, 2, 1, 1, [0.5, 1], [1, 1], s),
            "add_image": lambda s: w.add_image("i", torch.rand(3, 4, 4), s),
            "add_pr_curve": lambda s: w.add_pr_curve("p", torch.tensor([0, 1]), torch.tensor([0.2, 0.8]), s),
        }}
        for name, f in calls.items():
            for step in (2**63, 2**64, -2**63 - 1, 10**30):
                try:
                    f(step)
                    raise AssertionError(f"{{name}} accepted step {{step}}")
                except ValueError as exc:
                    assert "int64" in str(exc), (name, exc)
            try:
                f(1.5)
                raise AssertionError(f"{{name}} accepted step 1.5")
            except TypeError as exc:
                assert "global_step" in str(exc), exc
        for step in (2**63 - 1, -2**63, np.int64(5), torch.tensor(6), 7.0):
            w.add_scalar("ok", 1.0, step)
            w.add_text("ok_text", "x", step)
        w.close()
        got = {{}}
        for dirpath, _, names in os.walk(d):
            for n in names:
                for e in read_events(os.path.join(dirpath, n)):
                    for v in e.summary.value:
                        got.setdefault(v.tag, []).append(e.step)
        assert got.pop("ok") == [2**63 - 1, -2**63, 5, 6, 7]
        assert got.pop("ok_text/text_summary") == [2**63 - 1, -2**63, 5, 6, 7]
        assert got == {{}}, got  # nothing else was written
        try:
            tbfast.SummaryWriter({str(tmp_path / 'p')!r}, purge_step=2**63)
            raise AssertionError("purge_step accepted")
        except ValueError as exc:
            assert "purge_step" in str(exc)
    """)


def test_non_string_tags_raise_type_error_naming_the_argument(tmp_path):
    run_case(f"""
        import torch
        import tbfast
        w = tbfast.SummaryWriter({str(tmp_path)!r})
        img = torch.rand(3, 8, 8)
        calls = {{
            "add_scalar": lambda t: w.add_scalar(t, 1.0, 1),
            "add_scalars": lambda t: w.add_scalars(t, {{"a": 1.0}}, 1),
            "add_text": lambda t: w.add_text(t, "x", 1),
            "add_histogram": lambda t: w.add_histogram(t, torch.randn(10), 1),
            "add_histograms": lambda t: w.add_histograms([(t, torch.randn(10))], 1),
            "add_histogram_raw": lambda t: w.add_histogram_raw(t, 0, 1, 2, 1, 1, [0.5, 1], [1, 1], 1),
            "add_image": lambda t: w.add_image(t, img, 1),
            "add_images": lambda t: w.add_images(t, img[None], 1),
            "add_image_grid": lambda t: w.add_image_grid(t, img[None], 1),
            "add_pr_curve": lambda t: w.add_pr_curve(t, torch.tensor([0, 1]), torch.tensor([0.2, 0.8]), 1),
            "add_pr_curves": lambda t: w.add_pr_curves(t, torch.tensor([0, 1]), torch.rand(2, 2), 1),
            "add_tensor": lambda t: w.add_tensor(t, torch.ones(2), 1),
        }}
        for name, f in calls.items():
            for tag in (1, None, b"bytes", ["a"]):
                try:
                    f(tag)
                    w.flush()
                    raise AssertionError(f"{{name}} accepted tag {{tag!r}}")
                except TypeError as exc:
                    arg = "main_tag" if name == "add_scalars" else "tag"
                    assert f"{{arg}} must be a str" in str(exc), (name, tag, exc)
        w.add_scalar("fine", 1.0, 0)
        w.close()
    """)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_bad_tbfast_num_threads_names_the_variable(value):
    run_case("""
        import numpy as np
        import tbfast
        for call in (lambda: tbfast.histogram(np.ones(10)),
                     lambda: tbfast.pr_curve(np.array([0, 1]), np.array([0.1, 0.9])),
                     lambda: tbfast.image_grid(np.zeros((1, 3, 4, 4), np.float32)),
                     lambda: tbfast.encode_png(np.zeros((4, 4, 3), np.uint8))):
            try:
                call()
                raise AssertionError("accepted")
            except ValueError as exc:
                assert "TBFAST_NUM_THREADS" in str(exc), exc
    """, env={"TBFAST_NUM_THREADS": value, "TBFAST_BACKEND": "native"})


# --- crashes and full disks -----------------------------------------------------------------


def test_sigkill_mid_write_leaves_a_readable_prefix(tmp_path):
    """SIGKILL while four threads log (small flush interval, so writes are in flight):
    every record on disk has valid CRCs up to a possibly truncated last one, TensorBoard's
    loader reads the same records, and each thread's steps are a gapless prefix."""
    code = textwrap.dedent(f"""
        import threading, sys
        import torch
        import tbfast
        w = tbfast.SummaryWriter({str(tmp_path)!r}, max_queue=8, flush_secs=0.01)

        def log(k):
            i = 0
            while True:
                w.add_scalar("s%d" % k, float(i), i)
                w.add_histogram("h%d" % k, torch.randn(2000), i)
                w.add_text("t%d" % k, "x" * 200, i)
                i += 1

        for k in range(4):
            threading.Thread(target=log, args=(k,), daemon=True).start()
        print("started", flush=True)
        threading.Event().wait()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = event_files(tmp_path)
            if files and os.path.getsize(files[0]) > 1 << 20:
                break
            if proc.poll() is not None:
                pytest.fail(f"logger exited early: {proc.communicate()}")
            time.sleep(0.05)
        else:
            pytest.fail("the logger wrote less than 1 MiB in 60 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    (path,) = event_files(tmp_path)
    records = list(read_records(path))  # CorruptRecordError on any bad CRC
    assert records == list(RawEventFileLoader(path).Load())
    steps = steps_by_tag([path])
    assert len(steps) >= 4
    for tag, got in steps.items():
        assert got == list(range(len(got))), (tag, got[:10])


def _mount_small_tmpfs(path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    os.makedirs(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def test_full_filesystem_raises_and_leaves_a_readable_file(tmp_path):
    """A 1 MiB filesystem fills up: the logging call (or flush) gets the OSError (ENOSPC),
    no call hangs, the process exits normally, and the file holds a readable prefix."""
    mnt = tmp_path / "small"
    _mount_small_tmpfs(mnt)
    try:
        out, err = run_case(f"""
            import errno
            import tbfast
            w = tbfast.SummaryWriter({str(mnt / 'run')!r}, max_queue=4, flush_secs=0.01)
            raised = None
            for i in range(5000):
                try:
                    w.add_text("t", "y" * 2000, i)
                    if i % 20 == 0:
                        w.flush()
                except OSError as exc:
                    raised = (i, exc.errno)
                    break
            assert raised is not None, "4 MB of text fit in 1 MiB"
            assert raised[1] == errno.ENOSPC, raised
            print("raised", raised)
            try:
                w.close()
            except OSError:
                pass
            w2 = tbfast.SummaryWriter({str(mnt / 'run')!r})  # also full: an error, not a hang
        """, returncode=1, timeout=60)
        assert "raised" in out and "OSError" in err, err
        (path,) = event_files(mnt)
        steps = [e.step for e in read_events(path) if e.summary.value]
        assert steps == list(range(len(steps))) and len(steps) > 100
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --- more than 2^31 elements ----------------------------------------------------------------


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def test_more_than_2_31_elements_count_exactly(tmp_path):
    """2^31 + 5 uint8 elements (2 GiB) through add_histogram: the bucket counts, num and
    sum written are exact (int64 counts, float64 sums), in one pass over the data."""
    if _available_bytes() < 6 << 30:
        pytest.skip("needs about 6 GiB of free memory")
    out, _ = run_case(f"""
        import glob
        import torch
        import tbfast
        from tbfast.event_file import read_events
        n = 2**31 + 5
        x = torch.zeros(n, dtype=torch.uint8)
        x[::3] = 1
        x[-5:] = 200
        ones = (n - 5 + 2) // 3
        w = tbfast.SummaryWriter({str(tmp_path)!r})
        w.add_histogram("big", x, 0, bins=[-0.5, 0.5, 1.5, 255.5])
        import os
        os.environ["TBFAST_NUM_THREADS"] = "1"  # one thread's int32 counters take 2^31 + 5: flushed midway
        w.add_histogram("big/default", x, 0)  # default edges: the AVX-512 computed-slot kernel
        w.close()
        (path,) = glob.glob({str(tmp_path)!r} + "/*tfevents*")
        (h,) = [v.histo for e in read_events(path) for v in e.summary.value if v.tag == "big"]
        assert list(h.bucket)[-3:] == [n - ones - 5, ones, 5] and sum(h.bucket) == n, list(h.bucket)
        assert (h.num, h.sum, h.min, h.max) == (n, ones + 1000, 0, 200), (h.num, h.sum, h.min, h.max)
        (d,) = [v.histo for e in read_events(path) for v in e.summary.value if v.tag == "big/default"]
        nonzero = [c for c in d.bucket if c]
        assert nonzero == [n - ones - 5, ones, 5] and (d.num, d.sum) == (n, ones + 1000), (nonzero, d.num)
        print("exact")
    """, timeout=300, env={"TBFAST_NUM_THREADS": "2"})
    assert "exact" in out


def test_pr_curve_past_2_31_elements_counts_exactly():
    """2^31 + 5 binary predictions (float16, 4 GiB) and bool labels (2 GiB) in one
    pr_curve call: every bucket count, and so TP/FP/TN/FN, is exact (int64 counts; an
    int32 element index would wrap)."""
    if _available_bytes() < 9 << 30:
        pytest.skip("needs about 9 GiB of free memory (6 GiB of input)")
    out, _ = run_case("""
        import numpy as np, torch
        import tbfast
        n = 2**31 + 5
        # p[i] = 1.0, 0.5, 0.0 for i % 3 = 0, 1, 2 (buckets 2, 1, 0 of num_thresholds=3);
        # labels[i] = i % 2 == 0. repeat() writes contiguously: seconds, not a minute.
        p = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float16).repeat(n // 3 + 1)[:n]
        labels = torch.tensor([True, False]).repeat(n // 2 + 1)[:n]
        curve = tbfast.pr_curve(labels, p, num_thresholds=3)
        residue = lambda r: (n - r + 5) // 6  # how many i in [0, n) have i % 6 == r
        # buckets[k] = (negatives, positives) whose prediction falls in bucket k
        want = np.array([[residue(5), residue(2)], [residue(1), residue(4)], [residue(3), residue(0)]])
        got = np.asarray(curve.buckets)
        assert np.array_equal(got, want) and got.sum() == n, (got, want)
        positives = (n + 1) // 2
        assert list(curve.tp) == [positives, residue(4) + residue(0), residue(0)], list(curve.tp)
        assert list(curve.fn) == [0, residue(2), residue(2) + residue(4)], list(curve.fn)
        print("exact")
    """, timeout=300, env={"TBFAST_NUM_THREADS": "2"})
    assert "exact" in out
