"""``tbfast.SummaryWriter``: torch.utils.tensorboard's writer API on tbfast's kernels and
event-file writer. Each capability's methods live in a mixin next to its packers
(histogram_logging, pr_curve_logging, image_logging, scalar_logging, graph_logging,
embedding_logging, hparams_logging, media_logging, custom_scalars_logging); this class
owns files, steps and time, and text.

Lifecycle, as torch's: close() closes the event files; the next write opens a new event
file in the same log dir (and new ones for add_scalars' sub-runs).
"""

import datetime
import os
import socket
import threading
import time

from . import _wire
from .event_file import EventFileWriter
from .custom_scalars_logging import CustomScalarsLogging
from .embedding_logging import EmbeddingLogging
from .graph_logging import GraphLogging
from .histogram_logging import HistogramLogging
from .hparams_logging import HparamsLogging
from .image_logging import ImageLogging
from .media_logging import MediaLogging
from .pr_curve_logging import PRCurveLogging
from .scalar_logging import ScalarLogging
from .proto import Event, SessionLog, Summary, SummaryMetadata, TensorProto, TensorShapeProto
from .proto import DT_STRING


def text_summary(tag, text):
    """torch's text summary: DT_STRING tensor under ``<tag>/text_summary``, text plugin."""
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text", content=b""))
    tensor = TensorProto(dtype=DT_STRING, string_val=[text.encode("utf_8")],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=meta, tensor=tensor)])


def scalar_summary(tag, value):
    return Summary(value=[Summary.Value(tag=tag, simple_value=value)])


@_wire.check_tag_arguments
class SummaryWriter(ScalarLogging, HistogramLogging, PRCurveLogging, ImageLogging, MediaLogging, GraphLogging,
                    EmbeddingLogging, HparamsLogging, CustomScalarsLogging):
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
        self.log_dir = log_dir  # as given, like torch (get_logdir returns it)
        self.purge_step = _wire.check_step(purge_step, "purge_step")
        self.max_queue, self.flush_secs, self.filename_suffix = max_queue, flush_secs, filename_suffix
        self._lock = threading.Lock()
        self._file_writer = None
        self._init_scalars()
        self._open_file_writer()

    def get_logdir(self):
        """The directory event files are written to (``log_dir``)."""
        return self.log_dir

    def _open_file_writer(self):
        """The EventFileWriter; a new one (a new file in log_dir) after close(), as in
        torch. purge_step's two events go into the first file only."""
        fw = self._file_writer
        if fw is None:
            with self._lock:
                fw = self._file_writer
                if fw is None:
                    fw = EventFileWriter(self.log_dir, self.max_queue, self.flush_secs, self.filename_suffix)
                    if self.purge_step is not None:
                        fw.add_event(Event(step=self.purge_step, file_version="brain.Event:2"))
                        fw.add_event(Event(step=self.purge_step, session_log=SessionLog(status=SessionLog.START)))
                        self.purge_step = None
                    self._file_writer = fw
        return fw

    def _get_file_writer(self):
        """The EventFileWriter (reopened after close), after handing it the buffered
        scalars so that the file keeps the order of the calls."""
        if self._scalar_records:
            self._drain_scalars()
        return self._open_file_writer()

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
        self._get_file_writer().add_records(records)

    def _write_deferred(self, make_summaries, global_step=None, walltime=None):
        """Queue ``make_summaries`` (a callable returning Summaries, messages or bytes) to
        run on the writer thread once its inputs reached the host (device results); the
        events get this call's step and time. Errors it raises surface on the next call."""
        global_step = _wire.check_step(global_step)  # now, not on the writer thread
        wall = time.time() if walltime is None else float(walltime)

        def records():
            return [_wire.event(s if isinstance(s, (bytes, bytearray)) else s.SerializeToString(), wall, global_step)
                    for s in make_summaries()]

        self._get_file_writer().add_deferred(records)

    # -- everyday methods (scalars: scalar_logging) ----------------------------------------

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        """Text (markdown) under ``<tag>/text_summary``, as torch writes it."""
        self._write_summary(text_summary(tag, text_string), global_step, walltime)

    def flush(self):
        """Block until everything queued so far is written and flushed to disk. No-op
        after close()."""
        if self._file_writer is None:
            return
        self._get_file_writer().flush()
        for fw in list(self._scalars_writers.values()):
            fw.flush()

    def close(self):
        """Write everything accepted and close the files. Idempotent. The next write
        opens new event files in the same directories, as in torch."""
        if self._file_writer is None:
            return
        self._drain_scalars()
        with self._lock:
            fw, self._file_writer = self._file_writer, None
            subs, self._scalars_writers = self._scalars_writers, {}
        try:
            fw.close()
        finally:
            for sub in subs.values():
                sub.close()

    def __del__(self):
        # Dropped without close(): hand buffered scalars to the event file, whose own
        # thread then drains (and whose atexit hook waits for it).
        try:
            if self.__dict__.get("_scalar_records"):
                self._drain_scalars()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
