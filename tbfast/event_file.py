"""tbfast's own TensorBoard event-file writer and reader (spec section 5).

Files are TFRecord streams of serialised ``Event`` protos, named and started the way
TensorBoard's ``EventFileWriter`` does it, so TensorBoard (Python or Rust reader) loads
them; neither tensorboard nor TensorFlow is needed to write them.

Callers serialise and frame on their own thread and queue the framed bytes; one daemon
thread per writer appends them to the file. Results that are still on a GPU are queued as
deferred records (:meth:`EventFileWriter.add_deferred`): a callable that the writer thread
runs in queue order once the result has reached the host, packing and serialising there,
so the training thread never waits for the GPU. An error raised by such a callable (bad
data found when the result arrived) is raised once to the caller of the next add, flush
or close; the writer keeps working. Nothing accepted is lost: ``close()``, the
writer being garbage-collected, and interpreter exit (an atexit hook) all drain the
queue and flush.
"""

import atexit
import itertools
import math
import numbers
import os
import socket
import struct
import sys
import threading
import time
import warnings
import weakref

from .crc32c import masked_crc32c
from .proto import Event, SourceMetadata

__all__ = ["EventFileWriter", "WriterClosedError", "CorruptRecordError", "frame_record", "read_records", "read_events"]

FILE_VERSION = "brain.Event:2"
WRITER_NAME = "tbfast"

_uid = itertools.count()  # process-global, like TensorBoard's _global_uid
_uid_lock = threading.Lock()
_live = weakref.WeakSet()  # running _Workers; atexit drains them
_LIVENESS_S = 1.0  # waiting callers check this often that the writer thread still runs
_MAX_UNVERIFIED = 64 << 20  # bytes written before the file's existence is checked (and flushed)


class WriterClosedError(RuntimeError):
    """An EventFileWriter was used after close()."""


class CorruptRecordError(ValueError):
    """A TFRecord's length or data CRC does not match (the file is damaged)."""


def frame_record(data):
    """TFRecord framing of ``data`` (bytes-like): uint64 LE length, masked CRC-32C of
    those 8 bytes, the data, masked CRC-32C of the data. Returns bytes (len + 16).
    Raises TypeError for data that is not bytes-like."""
    if not isinstance(data, bytes):
        data = memoryview(data).tobytes()
    header = struct.pack("<Q", len(data))
    return b"".join((header, struct.pack("<I", masked_crc32c(header)), data, struct.pack("<I", masked_crc32c(data))))


def _open_event_file(logdir, filename_suffix):
    """Creates ``logdir`` and a new event file in it holding the first record (flushed).
    Returns (file, path); OSError when either cannot be created."""
    os.makedirs(logdir, exist_ok=True)
    with _uid_lock:
        uid = next(_uid)
    name = "events.out.tfevents.%010d.%s.%s.%s" % (time.time(), socket.gethostname(), os.getpid(), uid)
    path = os.path.join(logdir, name) + filename_suffix
    f = open(path, "xb")
    try:
        first = Event(wall_time=time.time(), file_version=FILE_VERSION,
                      source_metadata=SourceMetadata(writer=WRITER_NAME))
        f.write(frame_record(first.SerializeToString()))
        f.flush()
    except BaseException:
        try:
            f.close()
        except OSError:  # the same full disk: the buffered record is dropped with the file
            pass
        try:
            os.unlink(path)  # no half-written file without its first record
        except OSError:
            pass
        raise
    return f, path


def _check_options(max_queue, flush_secs):
    """Validated (max_queue, flush_secs); flush_secs None or +inf becomes math.inf (no
    timed flush). ValueError naming the argument otherwise."""
    if isinstance(max_queue, bool) or not isinstance(max_queue, numbers.Integral) or max_queue < 0:
        raise ValueError(f"max_queue must be an int >= 0 (0: unbounded), got {max_queue!r}")
    if flush_secs is None:
        return int(max_queue), math.inf
    if isinstance(flush_secs, bool) or not isinstance(flush_secs, numbers.Real) or not float(flush_secs) > 0:
        raise ValueError(f"flush_secs must be a number > 0, or None / math.inf for no timed flush "
                         f"(flush() and close() only), got {flush_secs!r}")
    return int(max_queue), float(flush_secs)


def _warn(message):
    """A RuntimeWarning from the writer thread; on stderr if warning filters turn it into
    an error (the writer thread must not die of a warning)."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    except Exception:
        print(f"tbfast: {message}", file=sys.stderr)


class _Worker:
    """Queue, file and background thread of one writer. The thread holds the only strong
    reference besides the facade, so the worker stays in ``_live`` until it has drained.

    Lock discipline: one lock (three conditions on it) guards the queue and counters; the
    file is touched only by the writer thread (and by close() after joining it). The pid
    is checked before the lock is taken, so a forked child never waits on a lock that a
    thread of the parent held at fork time (and _after_fork_in_child replaces the lock)."""

    def __init__(self, f, path, logdir, filename_suffix, max_queue, flush_secs):
        self._file = f
        self.path = path
        self._logdir = logdir
        self._suffix = filename_suffix
        self._max_queue = max_queue
        self._flush_secs = flush_secs  # math.inf: flush only when asked (flush/close)
        self._pid = os.getpid()
        self._init_locks()
        self._pending = []
        self._accepted = 0  # records ever queued
        self._flushed = 0  # records known written and flushed (or dropped after an error)
        self._flush_target = 0
        self._closing = False
        self._done = False
        self._error = None
        self._data_errors = []  # raised once each, to the next caller (deferred records)
        self._unverified = []  # bytes written since the file was last seen on disk after a flush
        self._unverified_bytes = 0
        self._thread = threading.Thread(target=self._run, name="tbfast-event-writer", daemon=True)
        self._thread.start()
        _live.add(self)

    def _init_locks(self):
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # worker waits: data, flush request, close
        self._space = threading.Condition(lock)  # producers wait: queue below max_queue
        self._progress = threading.Condition(lock)  # flush()/close() wait: records flushed

    # --- caller side ---------------------------------------------------------------

    def _check_pid(self):
        if self._pid != os.getpid():
            raise RuntimeError("EventFileWriter was created in another process (before fork); create a new one here")

    def _check_usable(self):
        # Called with the lock held.
        if self._error is not None:
            raise self._error
        if self._closing:
            raise WriterClosedError("EventFileWriter is closed; create a new writer to log more events")
        self._raise_data_error()

    def _raise_data_error(self):
        # Called with the lock held.
        if self._data_errors:
            raise self._data_errors.pop(0)

    def _wait(self, cond):
        """cond.wait() (lock held) that notices a writer thread gone without a word."""
        cond.wait(_LIVENESS_S)
        if self._error is None and not self._done and not self._thread.is_alive():
            self._error = RuntimeError("tbfast: the event writer thread is no longer running; records queued "
                                       f"for {self.path} since its last flush are lost")

    def put(self, framed):
        self.put_many((framed,))

    def put_many(self, framed):
        """Queue several framed records at once (one wake-up of the writer thread); waits
        while the queue is full, then takes the whole batch."""
        self._check_pid()
        with self._space:
            self._check_usable()
            while self._max_queue and len(self._pending) >= self._max_queue:
                self._wait(self._space)
                self._check_usable()
            self._pending.extend(framed)
            self._accepted += len(framed)
            self._work.notify()

    def flush(self):
        if self._pid != os.getpid():
            return
        with self._progress:
            if self._done:  # closed (no-op), or the thread died (its error, until close)
                if self._error is not None and not self._closing:
                    raise self._error
                return
            if self._error is not None:
                raise self._error
            target = self._accepted
            self._flush_target = max(self._flush_target, target)
            self._work.notify()
            while self._flushed < target and self._error is None:
                self._wait(self._progress)
            if self._error is not None:
                raise self._error
            self._raise_data_error()

    def close(self, wait=True):
        """Stops accepting records; with ``wait`` drains, flushes, closes the file and
        re-raises a background error (once)."""
        if self._pid != os.getpid():
            return
        with self._work:
            first = not self._closing
            self._closing = True
            self._work.notify()
            self._space.notify_all()  # blocked producers see the close and raise
        if not wait or threading.current_thread() is self._thread:
            return
        self._thread.join()
        if first and self._error is not None:
            raise self._error
        with self._progress:
            self._raise_data_error()

    # --- background thread -----------------------------------------------------------

    def _next_batch(self, unflushed, next_flush):
        """Waits for work; returns (records, accepted count, flush requested, closing)."""
        with self._work:
            while not (self._pending or self._closing or self._flush_target > self._flushed):
                timeout = None
                if unflushed and next_flush != math.inf:
                    timeout = next_flush - time.monotonic()
                    if timeout <= 0:
                        break
                    timeout = min(timeout, threading.TIMEOUT_MAX)
                self._work.wait(timeout)
            batch, self._pending = self._pending, []
            self._space.notify_all()
            want_flush = self._closing or self._flush_target > self._flushed
            return batch, self._accepted, want_flush, self._closing

    def _resolve(self, batch):
        """Framed records of a batch, running deferred items (outside the lock) in order."""
        if all(isinstance(item, bytes) for item in batch):
            return batch
        out = []
        for item in batch:
            if isinstance(item, bytes):
                out.append(item)
                continue
            try:
                out.extend(frame_record(r) for r in item())
            except Exception as exc:  # bad data found on arrival: reported to the next caller
                with self._progress:
                    self._data_errors.append(exc)
        return out

    def _write(self, data):
        self._file.write(data)
        self._unverified.append(data)
        self._unverified_bytes += len(data)

    def _file_deleted(self):
        """True when the open file no longer has a name (it, or its directory, was deleted:
        what is written to it now is lost)."""
        try:
            return os.fstat(self._file.fileno()).st_nlink == 0
        except (AttributeError, OSError, ValueError):  # not a real file (tests), or closed
            return False

    def _flush_and_verify(self):
        """Flushes; if the file was deleted meanwhile, starts a new file in the log dir (the
        directory re-created) and writes there everything written since the last check,
        with a warning: events are never dropped without a word."""
        self._file.flush()
        if self._unverified and self._file_deleted():
            old = self.path
            try:
                self._file.close()
            except OSError:
                pass
            self._file, self.path = _open_event_file(self._logdir, self._suffix)
            self._file.write(b"".join(self._unverified))
            self._file.flush()
            _warn(f"event file {old} was deleted while being written; continuing in a new file {self.path} "
                  f"(the {self._unverified_bytes} bytes written since the last flush are rewritten there)")
        self._unverified = []
        self._unverified_bytes = 0

    def _thread_error(self, exc):
        """What the callers get for ``exc`` raised in this thread: an OSError (full disk,
        permissions) as it is, anything else as RuntimeError with ``exc`` as its cause."""
        if isinstance(exc, OSError):
            return exc
        err = RuntimeError(f"tbfast: the event writer thread for {self.path} failed ({exc!r}); records queued "
                           f"after it are not written")
        err.__cause__ = exc
        return err

    def _run(self):
        try:
            self._loop()
        except BaseException as exc:  # anything else: kept and raised to the callers
            err = self._thread_error(exc)
            try:
                self._file.close()
            except BaseException:
                pass
            with self._progress:
                if self._error is None:
                    self._error = err
                self._done = True
                self._flushed = self._accepted
                self._progress.notify_all()
                self._space.notify_all()

    def _loop(self):
        never = self._flush_secs == math.inf
        next_flush = math.inf if never else 0.0  # the first data is flushed at once
        unflushed = False
        while True:
            batch, count, want_flush, closing = self._next_batch(unflushed, next_flush)
            if self._error is None:
                try:
                    if batch:
                        batch = self._resolve(batch)
                    if batch:
                        self._write(b"".join(batch))
                        unflushed = True
                    now = time.monotonic()
                    if unflushed and (want_flush or now >= next_flush or self._unverified_bytes > _MAX_UNVERIFIED):
                        self._flush_and_verify()
                        unflushed = False
                        next_flush = now + self._flush_secs
                except Exception as exc:  # reported to the next caller
                    self._error = self._thread_error(exc)
            with self._progress:
                if not unflushed or self._error is not None:
                    self._flushed = count
                self._progress.notify_all()
                self._space.notify_all()  # producers blocked on a full queue see an error
            if closing:
                break
        try:
            self._file.close()
        except Exception as exc:
            if self._error is None:
                self._error = exc
        with self._progress:
            self._done = True
            self._flushed = self._accepted
            self._progress.notify_all()


class EventFileWriter:
    """Writes TensorBoard event files from any number of threads.

    ``EventFileWriter(logdir, max_queue=10, flush_secs=120, filename_suffix="")`` creates
    ``logdir`` and ``events.out.tfevents.<time %010d>.<hostname>.<pid>.<uid><suffix>``
    in it, and writes the first record (``file_version="brain.Event:2"``,
    ``source_metadata.writer="tbfast"``) flushed at once. ``max_queue`` bounds the
    records waiting for the background thread (0: unbounded); producers block when it is
    full. Data reaches the file at once the first time, then at most every
    ``flush_secs`` seconds, or on :meth:`flush` / :meth:`close`. ``flush_secs=None`` (or
    ``math.inf``): no timed flush at all; data reaches the OS on flush(), close(), exit,
    or when the file's buffer fills.

    If the file (or the whole log dir) is deleted while the writer runs, the next flush
    notices, re-creates the directory, starts a new event file (first record included),
    writes there what was written since the previous flush, and warns (RuntimeWarning);
    :attr:`path` is then the new file.

    Raises ValueError for bad arguments and OSError when the directory or file cannot be
    created. After a background error (I/O as OSError, anything else as RuntimeError),
    every later add and flush, and the first close, raise it. A writer is usable in the
    process that created it only: in a forked child its methods raise RuntimeError
    (close() does nothing there).
    """

    def __init__(self, logdir, max_queue=10, flush_secs=120, filename_suffix=""):
        logdir = os.fspath(logdir)
        max_queue, flush_secs = _check_options(max_queue, flush_secs)
        if not isinstance(filename_suffix, str) or os.sep in filename_suffix:
            raise ValueError(f"filename_suffix must be a str without {os.sep!r}, got {filename_suffix!r}")
        self._logdir = logdir
        f, path = _open_event_file(logdir, filename_suffix)
        self._worker = _Worker(f, path, logdir, filename_suffix, max_queue, flush_secs)

    @property
    def path(self):
        """The event file being written (a new one after the old one was deleted)."""
        return self._worker.path

    def get_logdir(self):
        """The directory this writer writes into (str)."""
        return self._logdir

    def add_event(self, event):
        """Queues ``event`` (a :class:`tbfast.proto.Event`), serialised on this thread.

        Raises TypeError for other types, ValueError for a NaN ``wall_time`` (TensorBoard
        drops such events), WriterClosedError after close(), or a background I/O error.
        """
        if not isinstance(event, Event):
            raise TypeError(
                f"add_event expects tbfast.proto.Event, got {type(event).__module__}.{type(event).__qualname__}; "
                "for another Event class use add_record(event.SerializeToString())"
            )
        if event.wall_time != event.wall_time:
            raise ValueError("Event.wall_time is NaN; TensorBoard rejects such events")
        self._worker.put(frame_record(event.SerializeToString()))

    def add_record(self, data):
        """Queues one already-serialised record (bytes-like, usually an Event).

        Raises TypeError for non-bytes-like data, WriterClosedError after close(), or a
        background I/O error.
        """
        self._worker.put(frame_record(data))

    def add_records(self, datas):
        """Queues several already-serialised records in order, as one batch. Same
        errors as :meth:`add_record`."""
        self._worker.put_many([frame_record(d) for d in datas])

    def add_deferred(self, make_records):
        """Queues ``make_records``, a callable returning a list of serialised records,
        to run on the writer thread in queue order (it may wait there for a GPU result).
        An exception it raises is raised once to the caller of the next add, flush or
        close. Same errors as :meth:`add_record` for the queueing itself."""
        if not callable(make_records):
            raise TypeError("add_deferred expects a callable returning a list of serialised records")
        self._worker.put(make_records)

    def flush(self):
        """Blocks until every record queued so far is written and flushed to the OS.
        No-op after close(); raises a background I/O error if one happened."""
        self._worker.flush()

    def close(self):
        """Writes and flushes everything queued, closes the file, stops the thread.
        Idempotent; the first call re-raises a background I/O error if one happened."""
        self._worker.close()

    def reopen(self) -> None:
        """After close(): continues in a new event file in the same directory (its own
        first record included), with the same options; :attr:`path` is then the new
        file. Does nothing while the writer is open (a background error included: that
        one is raised by the next add, flush or close). Raises OSError when the file
        cannot be created."""
        old = self._worker
        if not old._closing:
            return
        f, path = _open_event_file(self._logdir, old._suffix)
        self._worker = _Worker(f, path, self._logdir, old._suffix, old._max_queue, old._flush_secs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Dropped without close(): let the thread drain in the background; atexit waits.
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close(wait=False)


@atexit.register
def _close_live_writers():
    for worker in list(_live):
        try:
            worker.close()
        except Exception as exc:  # nobody left to raise to
            print(f"tbfast: event writer failed at exit: {exc!r}", file=sys.stderr)


def _after_fork_in_child():
    """A forked child has none of the parent's threads, but copies of their locks, held
    or not. Every lock of this module is replaced; the parent's writers stay unusable in
    the child (their methods raise RuntimeError, close() and exit do nothing), and what
    they had queued is the parent's to write."""
    global _uid_lock
    _uid_lock = threading.Lock()
    for worker in list(_live):
        worker._init_locks()
        worker._pending = []
        worker._unverified = []
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- reading ---------------------------------------------------------------------------


def read_records(path):
    """Yields the data (bytes) of each TFRecord in the file at ``path``, CRCs checked.

    Stops cleanly at a truncated last record (a file still being written). Raises
    CorruptRecordError, after yielding every earlier record, at a CRC mismatch; OSError
    if the file cannot be read.
    """
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != length_crc:
                raise CorruptRecordError(f"{path}: bad length CRC in the record at byte {offset}")
            body = f.read(length + 4)
            if len(body) < length + 4:
                return
            data = body[:length]
            (data_crc,) = struct.unpack("<I", body[length:])
            if masked_crc32c(data) != data_crc:
                raise CorruptRecordError(f"{path}: bad data CRC in the record at byte {offset}")
            yield data
            offset += 16 + length


def read_events(path):
    """Yields each record of ``path`` parsed as a :class:`tbfast.proto.Event`; see
    :func:`read_records` for truncation and errors (a record that is not an Event raises
    google.protobuf.message.DecodeError)."""
    for data in read_records(path):
        yield Event.FromString(data)
