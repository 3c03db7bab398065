"""Scalar summaries: a lean wire encoder for ``add_scalar`` and the writer methods
``add_scalar``, ``add_scalars`` and ``add_tensor``.

``add_scalar`` is on every training step, so it does as little as it can on the caller's
thread: the Event (wall_time, step, Summary{Value{tag, simple_value}}) is encoded by
hand from per-tag cached bytes (about 1 us), appended to the writer's scalar buffer and
returns. The buffer is framed (TFRecord length, masked CRC-32C) and handed to the event
file in batches: when it holds
``SCALAR_BATCH`` records, before any other write of the writer (so the file keeps the
order of the calls), on ``flush()`` / ``close()``, at interpreter exit, and every
``SCALAR_LATENCY_S`` seconds from one background thread per process, so a scalar never
waits longer than that for its event file. The bytes equal what torch's writer
serialises (tests/test_writer.py compares them).
"""

import atexit
import collections
import os
import struct
import sys
import threading
import time
import weakref

import numpy as np

from . import _native, _tensor, _wire, crc32c
from .proto import Summary

SCALAR_BATCH = 256
SCALAR_LATENCY_S = 0.2

_WALL = struct.Struct("<Bd")  # Event.wall_time, tag byte 0x09
_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADERS = {}  # record length -> framed header (length + its masked CRC)


def _step_varint(step):
    """varint of an int step; negative and large ones through _wire.int64_varint
    (two's complement, ValueError outside int64)."""
    if 0 <= step < 16384:
        return _wire.varint(step)
    if 0 < step < 1 << 21:
        return bytes((step & 0x7F | 0x80, step >> 7 & 0x7F | 0x80, step >> 14))
    if 0 < step < 1 << 28:
        return bytes((step & 0x7F | 0x80, step >> 7 & 0x7F | 0x80, step >> 14 & 0x7F | 0x80, step >> 21))
    return _wire.int64_varint(step)


def frame_records(records):
    """TFRecord framing of each serialised record (event_file.frame_record's bytes), with
    the length header's CRC cached per length and one backend lookup per batch."""
    crc = crc32c.masked_crc32c
    if crc32c.backend().startswith("native"):
        crc = _native.cpu()[0].masked_crc32c
    out = []
    for r in records:
        head = _HEADERS.get(len(r))
        if head is None:
            length = _U64.pack(len(r))
            head = _HEADERS[len(r)] = length + _U32.pack(crc32c.masked_crc32c(length))
        out.append(head + r + _U32.pack(crc(r)))
    return out


def _tag_tail(tag):
    """The bytes of an Event after its step for a simple_value summary under ``tag``,
    except the 4 value bytes: Event.summary (0x2A), Summary.value (0x0A), Value.tag
    (0x0A), simple_value (0x15)."""
    tag_field = _wire.length_delimited(1, _wire.tag_bytes(tag))
    value_len = len(tag_field) + 5
    value = b"\x0a" + _wire.varint(value_len)
    summary_len = len(value) + value_len
    return b"\x2a" + _wire.varint(summary_len) + value + tag_field + b"\x15"


def _f32(value):
    try:
        return _F32.pack(value)
    except OverflowError:  # beyond float32: protobuf's (and C's) double -> float gives inf
        return _F32.pack(float("inf") if value > 0 else float("-inf"))


def scalar_event_bytes(tag, value, wall_time, step=None, _cache={}):
    """Serialised ``Event(wall_time, step, summary=Summary(value=[Value(tag,
    simple_value=value)]))``, the bytes protobuf writes for it (proto3: a zero wall_time
    or step is omitted)."""
    try:
        tail = _cache.get(tag)
    except TypeError:  # unhashable, so not a str: _tag_tail says so
        tail = None
    if tail is None:
        if len(_cache) > 100000:
            _cache.clear()
        tail = _cache[tag] = _tag_tail(tag)
    head = _WALL.pack(0x09, wall_time) if wall_time else b""
    if type(step) is not int:
        step = _wire.check_step(step)  # None, NumPy / tensor integers; TypeError otherwise
    if step:
        head += b"\x10" + _step_varint(step)
    return head + tail + _f32(value)


def as_scalar(value, name="scalar_value"):
    """float of a Python/NumPy number or a one-element tensor/array (torch's make_np
    rule; a CUDA tensor is read with ``.item()``, as torch does); ValueError for anything
    with more than one element."""
    cls = type(value)
    if cls is float or cls is int:
        return float(value)
    if _tensor.is_torch_tensor(value) or isinstance(value, np.ndarray):
        n = value.numel() if _tensor.is_torch_tensor(value) else value.size
        if n != 1:
            raise ValueError(f"{name} must have exactly one element, got {n}")
        _tensor.check_storage(value, name)  # .item() would read past a truncated storage
        value = value.item()
    return float(value)


# --- the background hand-off -------------------------------------------------------------

_writers = weakref.WeakSet()  # writers that have buffered scalars at some point
_ticker = {"pid": None}
_ticker_lock = threading.Lock()


def _drain_all():
    for w in list(_writers):
        if w.__dict__.get("_file_writer") is None:  # closed (scalars kept by a failed close): the
            continue  # writer's next call reopens it and writes them, never this thread
        try:
            w._drain_scalars()
        except Exception as exc:  # kept; raised by the writer's next call
            w._scalar_error = exc


def _tick():
    while True:
        time.sleep(SCALAR_LATENCY_S)
        _drain_all()


def _ensure_ticker():
    pid = os.getpid()
    if _ticker["pid"] == pid:
        return
    with _ticker_lock:
        if _ticker["pid"] != pid:
            threading.Thread(target=_tick, name="tbfast-scalars", daemon=True).start()
            _ticker["pid"] = pid


def _after_fork_in_child():
    global _ticker_lock
    _ticker["pid"] = None  # the ticker thread did not survive the fork; the next scalar starts one
    # Locks a parent thread may have held at fork time are replaced; the parent's writers
    # keep nothing buffered in the child (those scalars are the parent's to write).
    _ticker_lock = threading.Lock()
    for w in list(_writers):
        w._scalar_lock = threading.Lock()
        w._scalar_records.clear()
        if "_lock" in w.__dict__:
            w._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register  # registered after event_file's hook, so it runs first
def _drain_at_exit():
    for w in list(_writers):
        try:
            w._drain_scalars()
        except Exception as exc:
            print(f"tbfast: scalars not written at exit: {exc!r}", file=sys.stderr)


class ScalarLogging:
    """Writer methods for scalars and raw tensors. The host class provides
    ``_open_file_writer()`` (the current EventFileWriter, reopened after close),
    ``_get_file_writer()`` (the same after handing off buffered scalars),
    ``_write_summary`` and the attributes ``log_dir``, ``max_queue``, ``flush_secs``,
    ``filename_suffix``."""

    _scalar_error = None

    def _init_scalars(self):
        self._scalar_records = collections.deque()
        self._scalar_lock = threading.Lock()
        self._scalars_writers = {}
        _writers.add(self)

    def _drain_scalars(self):
        """Hand the buffered scalar events to the event file, in call order."""
        records = self._scalar_records
        if not records:
            return
        with self._scalar_lock:
            batch = [records.popleft() for _ in range(len(records))]
            if batch:
                fw = self._open_file_writer()
                put = getattr(getattr(fw, "_worker", None), "put_many", None)
                try:
                    if put is not None:  # EventFileWriter has no public "add framed records"
                        put(frame_records(batch))
                    else:
                        fw.add_records(batch)
                except BaseException:  # e.g. an earlier data error reported here: keep the batch
                    records.extendleft(reversed(batch))
                    raise

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False) -> None:
        """One scalar (Python/NumPy number or one-element tensor; a CUDA tensor is read
        with ``.item()``, as torch does). ``new_style`` writes a float (or double) tensor
        with the scalars plugin metadata, like torch. Raises ValueError for a value with
        more than one element."""
        value = scalar_value if type(scalar_value) is float else as_scalar(scalar_value)
        walltime = time.time() if walltime is None else _wire.check_walltime(walltime)
        if new_style:
            self._write_summary(new_style_scalar_summary(tag, value, double_precision), global_step, walltime)
            return
        if self._scalar_error is not None:
            exc, self._scalar_error = self._scalar_error, None
            raise exc
        if self._file_writer is None:  # closed: reopen now, as torch does
            self._open_file_writer()
        self._scalar_records.append(scalar_event_bytes(tag, value, walltime, global_step))
        if len(self._scalar_records) >= SCALAR_BATCH:
            self._drain_scalars()
        elif _ticker["pid"] is None:
            _ensure_ticker()

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None) -> None:
        """Several scalars on one chart: like torch, each goes to its own run directory
        ``<log_dir>/<main_tag with / as _>_<tag>`` under the tag ``main_tag``. These
        sub-writers are flushed and closed with this writer, and reopened (new files) by
        the next call after close().

        Every key, value, the step and ``walltime`` are checked before anything is written
        (TypeError naming ``tag_scalar_dict`` for a key that is not a str or a
        non-mapping; ValueError / TypeError naming ``walltime`` or ``global_step``)."""
        if not hasattr(tag_scalar_dict, "items"):
            raise TypeError(f"tag_scalar_dict must be a mapping of str tags to scalars, got "
                            f"{type(tag_scalar_dict).__name__}")
        items = list(tag_scalar_dict.items())
        for tag, _ in items:
            if not isinstance(tag, str):
                raise TypeError(f"tag_scalar_dict keys must be str (each names a sub-run), got "
                                f"{type(tag).__name__} {tag!r:.80}")
        items = [(tag, as_scalar(value, f"tag_scalar_dict[{tag!r}]")) for tag, value in items]
        walltime = _wire.check_walltime(walltime)
        global_step = _wire.check_step(global_step)
        logdir = self._get_file_writer().get_logdir()
        for tag, value in items:
            path = logdir + "/" + main_tag.replace("/", "_") + "_" + tag
            with self._lock:
                fw = self._scalars_writers.get(path)
                if fw is None:
                    from .writer import FileWriter  # torch's FileWriter API, as all_writers gives it

                    fw = self._scalars_writers[path] = FileWriter(path, self.max_queue, self.flush_secs,
                                                                  self.filename_suffix)
            fw.add_record(scalar_event_bytes(main_tag, value, walltime, global_step))

    def add_tensor(self, tag, tensor, global_step=None, walltime=None) -> None:
        """torch's ``add_tensor``: the whole tensor in a TensorProto (tensor plugin),
        made by torch's own packer. Needs tensorboard (``pip install tbfast[tensorboard]``)."""
        from ._optional import torch_summary

        summary = torch_summary("add_tensor").tensor_proto(tag, tensor)
        self._write_summary(summary.SerializeToString(), global_step, walltime)


def new_style_scalar_summary(tag, value, double_precision=False):
    """torch's new-style scalar: a float (or double) tensor, scalars plugin metadata."""
    from .proto import DT_DOUBLE, DT_FLOAT, SummaryMetadata, TensorProto

    tensor = TensorProto(dtype=DT_DOUBLE if double_precision else DT_FLOAT)
    (tensor.double_val if double_precision else tensor.float_val).append(value)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=meta)])
