"""``tbfast.SummaryWriter``: torch.utils.tensorboard's writer API on tbfast's kernels and
event-file writer. Each capability's methods live in a mixin next to its packers
(histogram_logging, pr_curve_logging, image_logging, scalar_logging, graph_logging,
embedding_logging, hparams_logging, media_logging, custom_scalars_logging); this class
owns files, steps and time, and text.

Lifecycle, as torch's: close() closes the event files; the next write opens a new event
file in the same log dir (and new ones for add_scalars' sub-runs).

torch's lower level is here too: ``file_writer`` / ``_get_file_writer()`` is a
:class:`FileWriter` (torch's ``FileWriter`` API on tbfast's event-file writer), which
code such as PyTorch Lightning's hparams logging writes TensorBoard protos through.
Annotations are strings here, as in torch's writer module; the mixins annotate their
methods as torch does (``-> None``), so every signature equals torch's up to string versus
object annotations (tests/test_writer_dropin.py compares them as strings).
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
import weakref

from . import _wire
from .event_file import EventFileWriter
from .custom_scalars_logging import CustomScalarsLogging
from .embedding_logging import EmbeddingLogging
from .graph_logging import GraphLogging, graph_event_bytes, run_metadata_event_bytes
from .histogram import default_edges
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


def _check_message(message, name, method):
    """TypeError naming ``method`` unless ``message`` is a protobuf message named ``name``
    ("Event", "Summary") of one of the wire-compatible proto sets (tbfast.proto,
    tensorboard's, tensorboardX's)."""
    if getattr(getattr(message, "DESCRIPTOR", None), "name", None) != name:
        raise TypeError(f"{method} expects a TensorBoard {name} protobuf message (tbfast.proto, tensorboard's or "
                        f"tensorboardX's), got {type(message).__module__}.{type(message).__qualname__}")


class FileWriter(EventFileWriter):
    """torch's ``torch.utils.tensorboard.writer.FileWriter`` API on tbfast's event-file
    writer: what :meth:`SummaryWriter._get_file_writer` and ``file_writer`` return.

    ``add_event``, ``add_summary``, ``add_graph`` and ``add_onnx_graph`` take the protos
    torch's take, from tbfast.proto, tensorboard or tensorboardX alike (written by their
    serialisation; the classes are wire-compatible). As in torch, ``add_event`` sets
    ``wall_time`` (now, unless ``walltime``) and ``step`` (when given) on the event it is
    passed. Steps are checked as everywhere in tbfast (an integer in int64's range).

    Lifecycle: close() closes this file; a writer's next write makes a new FileWriter (a
    new file), as in torch, so a FileWriter kept from before that close raises
    :class:`~tbfast.event_file.WriterClosedError`, unless :meth:`reopen` is called. The
    :class:`EventFileWriter` methods (``add_record``, ``add_records``, ...) work too.
    """

    _owner = None  # weakref to the SummaryWriter whose current file this is

    def __init__(self, log_dir, max_queue=10, flush_secs=120, filename_suffix="") -> None:
        super().__init__(log_dir, max_queue, flush_secs, filename_suffix)

    def _hand_off_scalars(self):
        """Before a write through torch's API: the owning writer's buffered scalars go to
        the file first, so that it keeps the order of the calls."""
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner._scalar_records and owner._file_writer is self:
            owner._drain_scalars()

    def add_event(self, event, step=None, walltime=None) -> None:
        """torch's ``FileWriter.add_event``: an ``Event`` with ``wall_time`` set to
        ``walltime`` (default now) and ``step`` to ``step`` when given. Raises TypeError
        for other messages, ValueError / TypeError for a wall time that is not a finite
        number (TensorBoard drops NaN ones), WriterClosedError after close()."""
        _check_message(event, "Event", "add_event")
        wall = _wire.check_walltime(walltime)
        step = _wire.check_step(step, "step")
        event.wall_time = wall
        if step is not None:
            event.step = step
        self._hand_off_scalars()
        self.add_record(event.SerializeToString())

    def add_summary(self, summary, global_step=None, walltime=None) -> None:
        """torch's ``FileWriter.add_summary``: ``summary`` (a ``Summary`` message, or its
        serialised bytes) in an Event at ``global_step`` and ``walltime`` (default now)."""
        if not isinstance(summary, (bytes, bytearray)):
            _check_message(summary, "Summary", "add_summary")
            summary = summary.SerializeToString()
        record = _wire.event(bytes(summary), _wire.check_walltime(walltime), global_step)
        self._hand_off_scalars()
        self.add_record(record)

    def add_graph(self, graph_profile, walltime=None) -> None:
        """torch's ``FileWriter.add_graph``: ``graph_profile`` is (GraphDef, RunMetadata),
        as torch's ``_pytorch_graph.graph`` returns them; two events without a step, the
        graph and its step stats tagged ``step1``."""
        graph, stepstats = graph_profile[0], graph_profile[1]
        wall = _wire.check_walltime(walltime)
        records = [graph_event_bytes(graph.SerializeToString(), wall),
                   run_metadata_event_bytes("step1", stepstats.SerializeToString(), wall)]
        self._hand_off_scalars()
        self.add_records(records)

    def add_onnx_graph(self, graph, walltime=None) -> None:
        """torch's ``FileWriter.add_onnx_graph``: ``graph`` (a GraphDef) in an event
        without a step."""
        record = graph_event_bytes(graph.SerializeToString(), _wire.check_walltime(walltime))
        self._hand_off_scalars()
        self.add_records([record])

    def flush(self) -> None:
        """Blocks until everything queued is written and flushed. No-op after close()."""
        super().flush()

    def close(self) -> None:
        """Writes and flushes everything queued and closes the file. Idempotent."""
        super().close()


class SummaryWriter(ScalarLogging, HistogramLogging, PRCurveLogging, ImageLogging, MediaLogging, GraphLogging,
                    EmbeddingLogging, HparamsLogging, CustomScalarsLogging):
    """Writes TensorBoard event files; method names and signatures follow
    ``torch.utils.tensorboard.SummaryWriter``.

    log_dir: directory (default ``runs/<Mon DD_HH-MM-SS>_<host><comment>``). purge_step:
    as in torch, TensorBoard discards events at or after it from earlier runs.
    max_queue / flush_secs: queue bound and longest time between flushes. Usable as a
    context manager; close() (or interpreter exit) writes everything accepted.

    torch's public attributes: ``log_dir``, ``purge_step``, ``max_queue``, ``flush_secs``,
    ``filename_suffix``, ``default_bins`` (TensorBoard's default histogram edges, the
    list torch makes; tbfast's ``bins="tensorflow"`` uses the same edges,
    :func:`tbfast.default_edges`, whatever this attribute is set to), ``file_writer``
    (the :class:`FileWriter`; None after close()) and ``all_writers`` (log dir -> event
    file writer: ``file_writer`` and add_scalars' sub-runs; None after close()).
    """

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix="") -> None:
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
        self.default_bins = default_edges().tolist()

    @property
    def file_writer(self):
        """torch's ``file_writer``: the :class:`FileWriter` of ``log_dir``; None after
        close() until the next write."""
        return self._file_writer

    @property
    def all_writers(self):
        """torch's ``all_writers``: {log dir: :class:`FileWriter`} for ``file_writer``
        and each add_scalars sub-run; a new dict each time; None after close()."""
        fw = self._file_writer
        if fw is None:
            return None
        writers = {fw.get_logdir(): fw}
        writers.update(self._scalars_writers)
        return writers

    def get_logdir(self):
        """The directory event files are written to (``log_dir``)."""
        return self.log_dir

    def _open_file_writer(self):
        """The FileWriter; a new one (a new file in log_dir) after close(), as in torch.
        purge_step's two events go into the first file only."""
        fw = self._file_writer
        if fw is None:
            with self._lock:
                fw = self._file_writer
                if fw is None:
                    fw = FileWriter(self.log_dir, self.max_queue, self.flush_secs, self.filename_suffix)
                    if self.purge_step is not None:
                        fw.add_event(Event(step=self.purge_step, file_version="brain.Event:2"))
                        fw.add_event(Event(step=self.purge_step, session_log=SessionLog(status=SessionLog.START)))
                        self.purge_step = None
                    fw._owner = weakref.ref(self)
                    self._file_writer = fw
        return fw

    def _get_file_writer(self):
        """torch's ``_get_file_writer()``: the :class:`FileWriter` (a new one after
        close), after handing it the buffered scalars so that the file keeps the order of
        the calls."""
        if self._scalar_records:
            self._drain_scalars()
        return self._open_file_writer()

    def _write_summary(self, summary, global_step=None, walltime=None):
        """Queue one Summary (tbfast.proto message, or its serialised bytes) as an event."""
        self._write_summaries((summary,), global_step, walltime)

    def _write_summaries(self, summaries, global_step=None, walltime=None):
        """Queue several Summaries (messages or bytes) as events at one step and time, in
        one batch."""
        wall = _wire.check_walltime(walltime)
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
        wall = _wire.check_walltime(walltime)

        def records():
            return [_wire.event(s if isinstance(s, (bytes, bytearray)) else s.SerializeToString(), wall, global_step)
                    for s in make_summaries()]

        self._get_file_writer().add_deferred(records)

    # -- everyday methods (scalars: scalar_logging) ----------------------------------------

    def add_text(self, tag, text_string, global_step=None, walltime=None) -> None:
        """Text (markdown) under ``<tag>/text_summary``, as torch writes it."""
        self._write_summary(text_summary(tag, text_string), global_step, walltime)

    def flush(self) -> None:
        """Block until everything queued so far is written and flushed to disk. No-op
        after close()."""
        if self._file_writer is None:
            return
        self._get_file_writer().flush()
        for fw in list(self._scalars_writers.values()):
            fw.flush()

    def close(self) -> None:
        """Write everything accepted and close the files. Idempotent. The next write
        opens new event files in the same directories, as in torch.

        After a writer-thread error (a full disk, a failed deferred packer), close()
        raises it once and still closes every file: the writer is closed afterwards, and
        its next write starts new files. Scalars the failed file could not take stay
        buffered and go into the next file."""
        if self._file_writer is None:
            return
        errors = []
        try:
            self._drain_scalars()
        except BaseException as exc:
            errors.append(exc)
        with self._lock:
            fw, self._file_writer = self._file_writer, None
            subs, self._scalars_writers = self._scalars_writers, {}
        for w in (fw, *subs.values()):
            try:
                w.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            for other in errors[1:]:
                if other is not errors[0]:
                    errors[0].add_note(f"closing also raised: {other!r}")
            raise errors[0]

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
