"""Backend selection: one static registry of ops, and one dispatch function.

Priority (DESIGN.md): CUDA tensors: native CUDA, then numba.cuda, then plain torch ops.
CPU tensors: native C++, then Numba, then NumPy/torch ("reference").

:data:`OPS` lists, for every op, the (backend, device) pairs it implements and where each
implementation lives (``"module:function"``, imported on first use, so this module never
imports an op module and there is no import cycle). Every pair listed must resolve to a
callable (a test checks them all); an op that has no implementation for a backend simply
does not list it.

The backend contract: an implementation takes the op's job object (validated inputs,
the device, the stream, and preallocated outputs on the job's device) and fills the
job's outputs on that device; :func:`dispatch` picks it and returns the backend name.

Every backend kind answers "can you run on this device, and if not, why not?".
``TBFAST_BACKEND=<name>`` forces one backend for every op (tests and benchmarks use it);
a forced backend that cannot run raises :class:`BackendUnavailable` with its reason,
never a silent fallback. PNG encoding and CRC-32C are host codecs, not ops: they use the
native module when it is loaded and Python/zlib otherwise.
"""

import importlib
import os

from . import _native

BACKENDS = ("native", "numba", "reference")
DEVICES = ("cpu", "cuda")
ENV_VAR = "TBFAST_BACKEND"

OPS = {
    "histogram": {
        ("native", "cpu"): "tbfast.histogram:_native_cpu",
        ("native", "cuda"): "tbfast.histogram:_native_cuda",
        ("numba", "cpu"): "tbfast.histogram:_numba_cpu",
        ("numba", "cuda"): "tbfast.histogram:_numba_cuda",
        ("reference", "cpu"): "tbfast.histogram:_reference_impl",
        ("reference", "cuda"): "tbfast.histogram:_reference_impl",
    },
    "pr_curve": {
        ("native", "cpu"): "tbfast.pr_curve:_native_cpu",
        ("native", "cuda"): "tbfast.pr_curve:_native_cuda",
        ("numba", "cpu"): "tbfast.pr_curve:_numba_cpu",
        ("numba", "cuda"): "tbfast.pr_curve:_numba_cuda",
        ("reference", "cpu"): "tbfast.pr_curve:_reference_cpu",
        ("reference", "cuda"): "tbfast.pr_curve:_reference_torch",
    },
    "image_grid": {
        ("native", "cpu"): "tbfast.image:_grid_native",
        ("native", "cuda"): "tbfast.image:_grid_native_cuda",
        ("numba", "cpu"): "tbfast.image:_grid_numba",
        ("numba", "cuda"): "tbfast.image:_grid_numba_cuda",
        ("reference", "cpu"): "tbfast.image:_grid_reference",
        ("reference", "cuda"): "tbfast.image:_grid_reference",
    },
}

_resolved = {}


class BackendUnavailable(RuntimeError):
    """No backend can run an op on a device (or the forced one cannot)."""


def implementation(op, backend, device):
    """The callable implementing ``op`` on (backend, device), or None if the op does not
    claim that pair."""
    key = (op, backend, device)
    fn = _resolved.get(key)
    if fn is None:
        where = OPS.get(op, {}).get((backend, device))
        if where is None:
            return None
        module, attr = where.split(":")
        fn = _resolved[key] = getattr(importlib.import_module(module), attr)
    return fn


def _numba_cpu():
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc})"
    return None


def _numba_cuda():
    why = _numba_cpu() or _torch_cuda()
    if why:
        return why
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return "NUMBA_ENABLE_CUDASIM is set: numba.cuda is the simulator, which cannot read torch CUDA tensors"
    try:
        from numba import cuda
    except ImportError as exc:
        return f"numba.cuda not importable (pip install numba-cuda) ({exc})"
    try:
        if not cuda.is_available():
            return "numba.cuda sees no usable CUDA device"
    except Exception as exc:  # driver errors surface here
        return f"numba.cuda failed to initialise ({exc})"
    return None


def _torch_cuda():
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


def why_unavailable(backend, device):
    """None when the backend kind can run on the device, else a one-line reason."""
    if backend == "native":
        if device == "cpu":
            return _native.cpu()[1]
        return _native.cuda()[1] or _torch_cuda()
    if backend == "numba":
        return _numba_cpu() if device == "cpu" else _numba_cuda()
    if backend == "reference":
        return None if device == "cpu" else _torch_cuda()
    return f"unknown backend {backend!r}"


def forced():
    """The backend named by TBFAST_BACKEND, or None."""
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise BackendUnavailable(f"{ENV_VAR}={name!r} is not one of {', '.join(BACKENDS)}")
    return name


def select(op, device, backend=None):
    """Return ``(backend_name, implementation)`` for ``op`` on ``device`` ('cpu'/'cuda').

    ``backend`` (or TBFAST_BACKEND) forces one; otherwise the first available in priority
    order. Raises BackendUnavailable listing every backend and its reason.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; ops: {', '.join(OPS)}")
    want = backend or forced()
    if want is not None and want not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {want!r}: one of {', '.join(BACKENDS)}")
    order = (want,) if want else BACKENDS
    reasons = []
    for name in order:
        claimed = (name, device) in OPS[op]
        why = "no implementation" if not claimed else why_unavailable(name, device)
        if why is None:
            return name, implementation(op, name, device)
        reasons.append(f"  {name}: {why}")
    head = f"backend {want!r} cannot run {op} on {device}" if want else f"no backend can run {op} on {device}"
    raise BackendUnavailable(head + ":\n" + "\n".join(reasons))


def dispatch(op, job, backend=None):
    """Run ``op`` on ``job`` (which has ``device_type`` 'cpu'/'cuda') with the selected
    backend; the implementation fills the job's outputs on its device. Returns the
    backend name."""
    name, fn = select(op, job.device_type, backend)
    fn(job)
    return name


def table():
    """Rows (op, device, backend, available, reason) for every op."""
    rows = []
    for op in OPS:
        for device in DEVICES:
            for name in BACKENDS:
                claimed = (name, device) in OPS[op]
                why = "no implementation" if not claimed else why_unavailable(name, device)
                rows.append((op, device, name, why is None, why or ""))
    return rows
