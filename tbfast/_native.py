"""Loads the native modules once and remembers why one could not be loaded."""

import importlib
import os

_cache = {}


def _load(name):
    if name not in _cache:
        try:
            _cache[name] = (importlib.import_module(f"tbfast.{name}"), None)
        except ImportError as exc:  # not built, or built for another Python
            _cache[name] = (None, f"tbfast.{name} not importable ({exc}); rebuild with `pip install -e .`")
    return _cache[name]


def cpu():
    """(module, None) or (None, reason) for the C++ CPU module tbfast._C."""
    return _load("_C")


def cuda():
    """(module, None) or (None, reason) for the CUDA module tbfast._C_cuda."""
    mod, why = _load("_C_cuda")
    if mod is None:
        return None, why.replace("rebuild", "build with nvcc on PATH (TBFAST_CUDA=on) and rebuild")
    count, err, msg = mod.device_count()
    if count == 0:
        return None, f"no CUDA device visible to the CUDA runtime ({msg or 'count is 0'})"
    return mod, None


def num_threads():
    """Threads for CPU kernels: TBFAST_NUM_THREADS, else torch's intra-op setting if torch
    is already imported, else the CPU count. ValueError naming the variable when it is set
    to anything but a positive integer. (Kernels may run fewer: never more threads than
    work items, and per-thread scratch stays within a budget, csrc/cpu/parallel.h.)"""
    env = os.environ.get("TBFAST_NUM_THREADS")
    if env is not None and env.strip():
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"TBFAST_NUM_THREADS must be a positive integer (CPU kernel threads), got {env!r}")
        return min(n, 1 << 16)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, torch.get_num_threads())
    return max(1, os.cpu_count() or 1)
