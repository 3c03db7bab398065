"""Backend selection: for each op and device, a priority list of implementations.

Priority (DESIGN.md): CUDA tensors: native CUDA, then numba.cuda, then plain torch ops.
CPU tensors: native C++, then Numba, then NumPy/torch ("reference").

Every backend kind answers "can you run on this device, and if not, why not?". Op modules
register an implementation per (op, backend, device) with :func:`implements`;
:func:`select` picks the first one that can run. ``TBFAST_BACKEND=<name>`` forces one
backend for every op (tests and benchmarks use it); a forced backend that cannot run
raises :class:`BackendUnavailable` with its reason, never a silent fallback.
"""

import os

from . import _native

BACKENDS = ("native", "numba", "reference")
DEVICES = ("cpu", "cuda")
ENV_VAR = "TBFAST_BACKEND"

_impls = {}  # (op, backend, device) -> callable


class BackendUnavailable(RuntimeError):
    """No backend can run an op on a device (or the forced one cannot)."""


def implements(op, backend, device):
    """Decorator registering ``fn`` as ``op``'s implementation for a backend and device."""
    if backend not in BACKENDS or device not in DEVICES:
        raise ValueError(f"unknown backend/device {backend}/{device}")

    def deco(fn):
        _impls[(op, backend, device)] = fn
        return fn

    return deco


def _numba_cpu():
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc})"
    return None


def _numba_cuda():
    why = _numba_cpu()
    if why:
        return why
    try:
        from numba import cuda
    except ImportError as exc:
        return f"numba.cuda not importable ({exc})"
    try:
        if not cuda.is_available():
            return "numba.cuda sees no usable CUDA device (set NUMBA_ENABLE_CUDASIM=1 for the simulator)"
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
        return _native.cuda()[1]
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
    want = backend or forced()
    order = (want,) if want else BACKENDS
    reasons = []
    for name in order:
        fn = _impls.get((op, name, device))
        why = "no implementation" if fn is None else why_unavailable(name, device)
        if why is None:
            return name, fn
        reasons.append(f"  {name}: {why}")
    head = f"backend {want!r} cannot run {op} on {device}" if want else f"no backend can run {op} on {device}"
    raise BackendUnavailable(head + ":\n" + "\n".join(reasons))


def table():
    """Rows (op, device, backend, available, reason) for every registered op."""
    _load_ops()
    ops = sorted({op for op, _, _ in _impls})
    rows = []
    for op in ops:
        for device in DEVICES:
            for name in BACKENDS:
                fn = _impls.get((op, name, device))
                why = "no implementation" if fn is None else why_unavailable(name, device)
                rows.append((op, device, name, why is None, why or ""))
    return rows


def _load_ops():
    # Importing the op modules registers their implementations.
    from . import histogram, image, png, pr_curve  # noqa: F401
