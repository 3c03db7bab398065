"""Shared test fixtures. No test module touches a GPU at import; GPU tests skip per test."""

import glob
import os

# Numba's CUDA kernels run under the Numba CUDA simulator in the ordinary suite (it must
# be chosen before numba is imported). scripts/gpu-check.sh sets TBFAST_TEST_NUMBA_CUDA=device
# to run them on a real GPU instead.
if os.environ.get("TBFAST_TEST_NUMBA_CUDA", "sim") == "sim":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402

# The one shared parametrisation: every backend on every device. CUDA cases skip (per
# test, never at import) where torch has no CUDA device.
BACKENDS = ("native", "numba", "reference")
DEVICES = ("cpu", "cuda")


def require_backend(op, name, device="cpu"):
    """Skip only where the build was explicitly made without native code
    (TBFAST_NATIVE=off); anywhere else an unavailable backend is a failure."""
    from tbfast import backends

    why = backends.why_unavailable(name, device)
    if why is None:
        return
    if device != "cpu" or (name == "native" and os.environ.get("TBFAST_NATIVE", "").lower() == "off"):
        pytest.skip(f"{name} on {device}: {why}")
    pytest.fail(f"backend {name} unavailable on {device}: {why}")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def on(device, x):
    """``x`` (torch tensor, NumPy array or sequence) as input on ``device``: unchanged on
    the CPU, a torch tensor on CUDA."""
    if device == "cpu":
        return x
    import numpy as np
    import torch

    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return x.to(device)


def event_values(logdir):
    """[(step, Summary.Value)] from every event file under logdir, read with
    TensorBoard's own record loader and Event class, values exactly as written.
    (EventFileLoader would migrate legacy histo/simple_value fields into tensors.)"""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(str(logdir), "**", "*tfevents*"), recursive=True)):
        for record in event_file_loader.RawEventFileLoader(path).Load():
            event = event_pb2.Event.FromString(record)
            if event.HasField("summary"):
                out.extend((event.step, v) for v in event.summary.value)
    return out


def values_by_tag(logdir):
    out = {}
    for step, v in event_values(logdir):
        out.setdefault(v.tag, []).append((step, v))
    return out


SIMD_LEVELS = ("off", "avx2", "avx512")


def outputs_per_simd_level(script):
    """stdout of ``script`` run in fresh interpreters at each SIMD level the CPU kernels
    may use (TBFAST_SIMD=off/avx2/avx512, a cap: a CPU without AVX-512 runs its best level
    in the last run; 2 threads), for bit-for-bit comparisons of the scalar definitions
    and every SIMD path."""
    import subprocess
    import sys

    runs = []
    for level in SIMD_LEVELS:
        env = dict(os.environ, TBFAST_SIMD=level, TBFAST_NUM_THREADS="2")
        env.pop("TBFAST_DISABLE_SIMD", None)
        runs.append(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    return runs


def free_port():
    """A TCP port free on 127.0.0.1 now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bounded(cmd, timeout, env=None, cwd=None):
    """(returncode, stdout, stderr) of ``cmd`` run in a session of its own. Past
    ``timeout`` seconds its whole process group (spawned ranks too) is killed and the
    calling test fails with the output: a hang is a failure, never a stuck test run."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hang: {' '.join(map(str, cmd))[:300]} did not exit within {timeout} s\n--- stdout\n"
                    f"{out[-4000:]}\n--- stderr\n{err[-4000:]}", pytrace=False)
    return proc.returncode, out, err
