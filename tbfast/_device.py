"""The device contract: streams, device-resident constants, and packed asynchronous
results.

* Streams: CUDA work runs on the caller's current torch stream of the tensor's device,
  or on the ``stream`` a caller passes (a ``torch.cuda.Stream``, any object with
  ``__cuda_stream__``, or a raw ``cudaStream_t`` handle as an int). Never the NULL
  stream silently: a handle of 0 is used only when the caller passes 0 itself.
* Constants (edge tables) go to a device once, through pinned memory and a non-blocking
  copy; later users on any stream wait for that copy with an event, never on the host.
* :class:`Packed`: every output array of one batch lives in one int64 buffer on the
  job's device, so moving a batch to the host is one device-to-host copy into pinned
  memory plus a CUDA event. CPU batches are ready at once and take the same path.
"""

import sys

import numpy as np


def _torch():
    import torch

    return torch


# ---- streams ------------------------------------------------------------------------------


def resolve_stream(stream, device_index):
    """Raw stream handle (int) for work on CUDA device ``device_index``."""
    if stream is None:
        torch = _torch()
        return torch.cuda.current_stream(device_index).cuda_stream
    if isinstance(stream, bool):
        raise TypeError("stream must be a torch.cuda.Stream, an object with __cuda_stream__, or an int handle")
    if isinstance(stream, int):
        if stream < 0:
            raise ValueError(f"stream handle must be >= 0, got {stream}")
        return stream
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        value = proto() if callable(proto) else proto
        if isinstance(value, tuple):  # (version, handle)
            value = value[1]
        return int(value)
    handle = getattr(stream, "cuda_stream", None)
    if handle is not None:
        return int(handle)
    raise TypeError(f"stream must be a torch.cuda.Stream, an object with __cuda_stream__, or an int handle, got "
                    f"{type(stream).__name__}")


def torch_stream(handle, device_index):
    """A torch stream object for ``handle`` (for allocations and ordering on it)."""
    torch = _torch()
    current = torch.cuda.current_stream(device_index)
    if current.cuda_stream == handle:
        return current
    return torch.cuda.ExternalStream(handle, device=torch.device("cuda", device_index))


class StreamScope:
    """Context: torch allocations and ops run on the job's stream (no-op on CPU/meta)."""

    def __init__(self, job):
        self._ctx = None
        if job.device_type == "cuda" and job.torch_stream is not None:
            self._ctx = _torch().cuda.stream(job.torch_stream)

    def __enter__(self):
        if self._ctx is not None:
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        return False


def to_device(array, device, stream=None):
    """A torch copy of the host NumPy ``array`` on ``device`` ('cpu', a CUDA device or
    'meta') without a host sync: pinned memory and a non-blocking copy on CUDA."""
    torch = _torch()
    if isinstance(array, torch.Tensor):
        return array.to(device, non_blocking=True)
    array = np.ascontiguousarray(array)
    t = torch.from_numpy(array if array.flags.writeable else array.copy())
    device = torch.device(device)
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


_constants = {}


def device_constant(key, make, device_index, stream):
    """A device copy of the host array ``make()`` cached under ``key`` per device; the
    ``stream`` (torch stream object) waits for the upload with an event, not the host."""
    torch = _torch()
    entry = _constants.get((key, device_index))
    if entry is None:
        dev = torch.device("cuda", device_index)
        with torch.cuda.stream(stream):
            t = to_device(make(), dev)
            event = torch.cuda.Event()
            event.record(stream)
        entry = _constants[(key, device_index)] = (t, event)
    else:
        stream.wait_event(entry[1])
    return entry[0]


# ---- packed results ---------------------------------------------------------------------


class Packed:
    """Output arrays of one batch in one int64 buffer.

    ``fields``: [(name, shape, kind)] with kind 'i8' (int64) or 'f8' (float64, stored as
    its bits). Attributes of those names are views: NumPy arrays on the CPU, torch
    tensors on CUDA or meta. :meth:`start_host_copy` begins the single asynchronous
    device-to-host copy; :meth:`ready` / :meth:`wait` / :meth:`host` follow it.
    """

    def __init__(self, fields, device_type, device_index=None, torch_stream=None):
        self.device_type = device_type
        self._layout = []
        offset = 0
        for name, shape, kind in fields:
            size = 1
            for n in shape:
                size *= int(n)
            self._layout.append((name, offset, size, tuple(shape), kind))
            offset += size
        self.words = offset
        self._stream = torch_stream
        self._event = None
        self._host = None
        if device_type == "cpu":
            self.buffer = np.empty(offset, np.int64)
            self._host = self.buffer
        else:
            torch = _torch()
            dev = torch.device("cuda", device_index) if device_type == "cuda" else torch.device("meta")
            self.buffer = torch.empty(offset, dtype=torch.int64, device=dev)
        for name, view in self._views(self.buffer).items():
            setattr(self, name, view)

    def _views(self, buf):
        out = {}
        for name, offset, size, shape, kind in self._layout:
            v = buf[offset:offset + size]
            if kind == "f8":
                v = v.view(np.float64) if isinstance(v, np.ndarray) else v.view(_torch().float64)
            out[name] = v.reshape(shape)
        return out

    def start_host_copy(self):
        """Begin the one device-to-host copy (pinned memory + event); no-op on CPU or
        when already started. Never waits for the device."""
        if self._host is not None or self._event is not None:
            return
        if self.device_type != "cuda":
            raise ValueError(f"a {self.device_type} result cannot be copied to the host")
        self._pinned, self._event = _copy_to_pinned(self.buffer, self._stream)

    def ready(self):
        """True when the host copy has landed (always on CPU)."""
        if self._host is not None:
            return True
        return self._event is not None and self._event.query()

    def wait(self):
        """Wait for the host copy (starting it if needed); returns the host buffer."""
        if self._host is None:
            self.start_host_copy()
            self._event.synchronize()
            self._host = self._pinned.numpy()
        return self._host

    def host(self):
        """{name: host NumPy view} after :meth:`wait`."""
        return self._views(self.wait())


def _copy_to_pinned(buffer, stream):
    """(pinned host tensor, event): ``buffer`` copied without blocking on ``stream``."""
    torch = _torch()
    with torch.cuda.stream(stream):
        host = torch.empty(buffer.shape, dtype=buffer.dtype, pin_memory=True)
        host.copy_(buffer, non_blocking=True)
        event = torch.cuda.Event()
        event.record(stream)
    return host, event


class HostCopy:
    """Host copies of a few small device tensors (a PR state, a uint8 image) in one
    device-to-host copy: the tensors are packed into one byte buffer on their device,
    copied into pinned memory and an event is recorded; :meth:`wait` returns NumPy
    arrays of the original dtypes and shapes. Host (CPU) tensors are ready at once. The
    packing also snapshots the values, so later updates of the sources do not show."""

    def __init__(self, tensors, stream=None):
        torch = _torch()
        self._meta = [(t.dtype, tuple(t.shape), t.numel() * t.element_size()) for t in tensors]
        self._event = None
        if all(t.device.type == "cpu" for t in tensors):
            self._arrays = [t.detach().clone().numpy() for t in tensors]
            return
        self._arrays = None
        dev = tensors[0].device
        stream = stream if stream is not None else torch.cuda.current_stream(dev)
        with torch.cuda.stream(stream):
            flat = [t.detach().contiguous().reshape(-1).view(torch.uint8) for t in tensors]
            packed = flat[0].clone() if len(flat) == 1 else torch.cat(flat)
        self._pinned, self._event = _copy_to_pinned(packed, stream)

    def ready(self):
        return self._arrays is not None or self._event.query()

    def wait(self):
        """[NumPy array] in the order given (waits for the copy)."""
        if self._arrays is None:
            self._event.synchronize()
            buf, out, offset = self._pinned.numpy(), [], 0
            torch = _torch()
            for dtype, shape, nbytes in self._meta:
                part = torch.from_numpy(buf[offset:offset + nbytes]).view(dtype).reshape(shape)
                out.append(part.numpy() if dtype != torch.bfloat16 else part.float().numpy())
                offset += nbytes
            self._arrays = out
        return self._arrays


def is_meta(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor) and x.device.type == "meta"
