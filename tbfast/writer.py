"""``tbfast.SummaryWriter``: torch.utils.tensorboard's writer API on tbfast's kernels and
event-file writer. Each capability's methods live in a mixin next to its packers
(histogram_logging, pr_curve_logging, image_logging); this class owns files, steps and
time, and the everyday methods (scalars, text).
"""

import datetime
import os
import socket
import threading
import time

import numpy as np

from . import _tensor, _wire
from .event_file import EventFileWriter
from .histogram_logging import HistogramLogging
from .image_logging import ImageLogging
from .pr_curve_logging import PRCurveLogging
from .proto import Event, SessionLog, Summary, SummaryMetadata, TensorProto, TensorShapeProto
from .proto import DT_STRING


def _scalar(value, name="scalar_value"):
    """float of a Python/NumPy number or a one-element tensor/array (torch's make_np
    rule); ValueError for anything with more than one element."""
    if _tensor.is_torch_tensor(value) or isinstance(value, np.ndarray):
        n = value.numel() if _tensor.is_torch_tensor(value) else value.size
        if n != 1:
            raise ValueError(f"{name} must have exactly one element, got {n}")
        value = value.item()
    return float(value)


def text_summary(tag, text):
    """torch's text summary: DT_STRING tensor under ``<tag>/text_summary``, text plugin."""
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text", content=b""))
    tensor = TensorProto(dtype=DT_STRING, string_val=[text.encode("utf_8")],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=meta, tensor=tensor)])


def scalar_summary(tag, value):
    return Summary(value=[Summary.Value(tag=tag, simple_value=value)])


class SummaryWriter(HistogramLogging, PRCurveLogging, ImageLogging):
    """Writes TensorBoard event files; method names and signatures follow
    ``torch.utils.tensorboard.SummaryWriter``.

    log_dir: directory (default ``runs/<Mon DD_HH-MM-SS>_<host><comment>``). purge_step:
    as in torch, TensorBoard discards events at or after it from earlier runs.
    max_queue / flush_secs: queue bound and longest time between flushes. Usable as a
    context manager; close() (or interpreter exit) writes everything accepted.
    """

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix=""):
        if not log_dir:
            stamp = datetime.datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        self.purge_step = purge_step
        self.max_queue, self.flush_secs, self.filename_suffix = max_queue, flush_secs, filename_suffix
        self._lock = threading.Lock()
        self._file_writer = EventFileWriter(self.log_dir, max_queue, flush_secs, filename_suffix)
        self._scalars_writers = {}
        if purge_step is not None:
            self._file_writer.add_event(Event(step=purge_step, file_version="brain.Event:2"))
            self._file_writer.add_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def get_logdir(self):
        return self.log_dir

    def _get_file_writer(self):
        return self._file_writer

    def _write_summary(self, summary, global_step=None, walltime=None):
        """Queue one Summary (tbfast.proto message, or its serialised bytes) as an event."""
        self._write_summaries((summary,), global_step, walltime)

    def _write_summaries(self, summaries, global_step=None, walltime=None):
        """Queue several Summaries (messages or bytes) as events at one step and time, in
        one batch."""
        wall = time.time() if walltime is None else float(walltime)
        records = []
        for s in summaries:
            if not isinstance(s, (bytes, bytearray)):
                s = s.SerializeToString()
            records.append(_wire.event(s, wall, global_step))
        self._file_writer.add_records(records)

    def _write_deferred(self, make_summaries, global_step=None, walltime=None):
        """Queue ``make_summaries`` (a callable returning Summaries, messages or bytes) to
        run on the writer thread once its inputs reached the host (device results); the
        events get this call's step and time. Errors it raises surface on the next call."""
        wall = time.time() if walltime is None else float(walltime)

        def records():
            return [_wire.event(s if isinstance(s, (bytes, bytearray)) else s.SerializeToString(), wall, global_step)
                    for s in make_summaries()]

        self._get_file_writer().add_deferred(records)

    # -- everyday methods ---------------------------------------------------------------

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        """One scalar (Python/NumPy number or one-element tensor). ``new_style`` writes
        a float (or double) tensor with the scalars plugin metadata, like torch."""
        value = _scalar(scalar_value)
        if new_style:
            from .proto import DT_DOUBLE, DT_FLOAT

            tensor = TensorProto(dtype=DT_DOUBLE if double_precision else DT_FLOAT)
            (tensor.double_val if double_precision else tensor.float_val).append(value)
            meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
            summary = Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=meta)])
        else:
            summary = scalar_summary(tag, value)
        self._write_summary(summary, global_step, walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """Several scalars on one chart: like torch, each goes to its own run directory
        ``<log_dir>/<main_tag>_<tag>`` under the tag ``main_tag``."""
        walltime = time.time() if walltime is None else walltime
        for tag, value in tag_scalar_dict.items():
            path = os.path.join(self.log_dir, f"{main_tag.replace('/', '_')}_{tag}")
            with self._lock:
                fw = self._scalars_writers.get(path)
                if fw is None:
                    fw = self._scalars_writers[path] = EventFileWriter(path, self.max_queue, self.flush_secs,
                                                                       self.filename_suffix)
            fw.add_record(_wire.event(scalar_summary(main_tag, _scalar(value)).SerializeToString(), walltime,
                                      global_step))

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        """Text (markdown) under ``<tag>/text_summary``, as torch writes it."""
        self._write_summary(text_summary(tag, text_string), global_step, walltime)

    def flush(self):
        """Block until everything queued so far is written and flushed to disk."""
        self._file_writer.flush()
        for fw in list(self._scalars_writers.values()):
            fw.flush()

    def close(self):
        """Write everything accepted and close the files. Idempotent."""
        self._file_writer.close()
        for fw in list(self._scalars_writers.values()):
            fw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
