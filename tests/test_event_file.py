"""EventFileWriter: file naming, framing, TensorBoard's readers, threads, close, errors,
flush timing and interpreter exit."""

import os
import re
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader, RawEventFileLoader
from tensorboard.compat.proto import event_pb2 as tb_event

from tbfast import proto
from tbfast.event_file import (
    CorruptRecordError,
    EventFileWriter,
    WriterClosedError,
    frame_record,
    read_events,
    read_records,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scalar_event(tag, step, value, wall_time=None):
    return proto.Event(
        wall_time=time.time() if wall_time is None else wall_time,
        step=step,
        summary=proto.Summary(value=[proto.Summary.Value(tag=tag, simple_value=value)]),
    )


def tb_records(path):
    """Record bytes as TensorBoard's own loader sees them."""
    return list(RawEventFileLoader(path).Load())


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- naming, first record, framing ---------------------------------------------------------


def test_file_name_format_and_logdir_creation(tmp_path):
    logdir = tmp_path / "a" / "b"
    t0 = int(time.time())
    w1 = EventFileWriter(logdir)
    w2 = EventFileWriter(str(logdir), filename_suffix=".v2")
    t1 = int(time.time())
    try:
        assert w1.get_logdir() == str(logdir) and os.path.isdir(logdir)
        pattern = r"events\.out\.tfevents\.(\d{10})\.%s\.%d\.(\d+)" % (re.escape(socket.gethostname()), os.getpid())
        m1 = re.fullmatch(pattern, os.path.basename(w1.path))
        m2 = re.fullmatch(pattern + r"\.v2", os.path.basename(w2.path))
        assert m1 and m2, (w1.path, w2.path)
        assert t0 <= int(m1.group(1)) <= t1
        assert int(m2.group(2)) > int(m1.group(2))  # process-global counter
        assert os.path.dirname(w1.path) == str(logdir)
    finally:
        w1.close()
        w2.close()


def test_first_record_is_on_disk_at_once(tmp_path):
    t0 = time.time()
    w = EventFileWriter(tmp_path, flush_secs=1000)
    try:
        events = list(read_events(w.path))  # read before any flush or close
        assert len(events) == 1
        first = events[0]
        assert first.file_version == "brain.Event:2"
        assert first.source_metadata.writer == "tbfast"
        assert t0 <= first.wall_time <= time.time()
        assert first.step == 0
        # TensorBoard parses it to the same message.
        (raw,) = tb_records(w.path)
        assert tb_event.Event.FromString(raw).file_version == "brain.Event:2"
        assert raw == first.SerializeToString()
    finally:
        w.close()


def test_frame_record_spec_vector():
    data = proto.Event(wall_time=1700000000.0, file_version="brain.Event:2").SerializeToString()
    expect = "1800000000000000" "a37f4b22" "0900000040fc54d9411a0d627261696e2e4576656e743a32" "eced8f9d"
    assert frame_record(data).hex() == expect
    assert frame_record(bytearray(data)) == frame_record(memoryview(data)) == bytes.fromhex(expect)
    empty = frame_record(b"")
    assert len(empty) == 16 and empty[:8] == bytes(8)
    assert empty[12:] == struct.pack("<I", 0xA282EAD8)  # mask(crc32c(b"")) = mask(0)
    with pytest.raises(TypeError):
        frame_record("text")


def test_empty_record_round_trips(tmp_path):
    with EventFileWriter(tmp_path) as w:
        w.add_record(b"")
    assert list(read_records(w.path))[1:] == [b""]
    assert tb_records(w.path)[1:] == [b""]


# --- TensorBoard's readers --------------------------------------------------------------------


def test_tensorboard_event_file_loader(tmp_path):
    hist = proto.HistogramProto(min=-1.0, max=2.0, num=3.0, sum=1.0, sum_squares=5.0,
                                bucket_limit=[0.0, 2.0], bucket=[1.0, 2.0])
    written = [
        scalar_event("loss", 1, 0.5),
        proto.Event(wall_time=2.0, step=2, summary=proto.Summary(value=[proto.Summary.Value(tag="h", histo=hist)])),
        proto.Event(wall_time=3.0, step=3, session_log=proto.SessionLog(status=proto.SessionLog.START)),
    ]
    with EventFileWriter(tmp_path) as w:
        for e in written:
            w.add_event(e)
        w.add_record(tb_event.Event(wall_time=4.0, step=4, file_version="x").SerializeToString())
    # Raw records: byte-identical to what we serialised.
    raw = tb_records(w.path)
    assert raw[1:4] == [e.SerializeToString() for e in written]
    assert raw == list(read_records(w.path))
    # Parsed records, after TensorBoard's legacy-data migration (spec 6.2, 8).
    loaded = list(EventFileLoader(w.path).Load())
    assert all(isinstance(e, tb_event.Event) for e in loaded)
    assert [e.step for e in loaded] == [0, 1, 2, 3, 4]
    scalar, histo = loaded[1].summary.value[0], loaded[2].summary.value[0]
    assert (scalar.tag, scalar.metadata.plugin_data.plugin_name) == ("loss", "scalars")
    assert list(scalar.tensor.float_val) == [0.5]
    assert (histo.tag, histo.metadata.plugin_data.plugin_name) == ("h", "histograms")
    assert [d.size for d in histo.tensor.tensor_shape.dim] == [2, 3]
    assert loaded[3].session_log.status == tb_event.SessionLog.START
    assert loaded[4].file_version == "x"


def test_tensorboard_event_accumulator_scalars(tmp_path):
    with EventFileWriter(tmp_path) as w:
        for step in range(50):
            w.add_event(scalar_event("train/loss", step, 1.0 / (step + 1)))
            w.add_event(scalar_event("lr", step, 0.125))
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train/loss", "lr"}
    loss = acc.Scalars("train/loss")
    assert [s.step for s in loss] == list(range(50))
    assert [s.value for s in loss] == pytest.approx([1.0 / (s + 1) for s in range(50)], rel=1e-7)
    assert {s.value for s in acc.Scalars("lr")} == {0.125}


@pytest.mark.parametrize("cut", ["one byte", "inside data", "inside header", "only length"])
def test_truncated_tail_yields_earlier_records(tmp_path, cut):
    with EventFileWriter(tmp_path) as w:
        for step in range(10):
            w.add_event(scalar_event("x", step, float(step)))
    last_len = 16 + len(scalar_event("x", 9, 9.0, wall_time=1.0).SerializeToString())
    size = os.path.getsize(w.path)
    keep = {"one byte": size - 1, "inside data": size - last_len + 20, "inside header": size - last_len + 10,
            "only length": size - last_len + 8}[cut]
    with open(w.path, "r+b") as f:
        f.truncate(keep)
    steps = [tb_event.Event.FromString(r).step for r in tb_records(w.path)]
    assert steps == [0] + list(range(9))  # first record, then steps 0..8
    assert [e.step for e in read_events(w.path)] == steps


@pytest.mark.parametrize("where", ["data crc", "data byte", "length crc"])
def test_corrupted_last_record_yields_earlier_records(tmp_path, where):
    with EventFileWriter(tmp_path) as w:
        for step in range(10):
            w.add_event(scalar_event("x", step, float(step)))
    size = os.path.getsize(w.path)
    last_len = 16 + len(scalar_event("x", 9, 9.0, wall_time=1.0).SerializeToString())
    pos = {"data crc": size - 1, "data byte": size - 6, "length crc": size - last_len + 9}[where]
    with open(w.path, "r+b") as f:
        f.seek(pos)
        byte = f.read(1)
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0x40]))
    steps = [tb_event.Event.FromString(r).step for r in tb_records(w.path)]
    assert steps == [0] + list(range(9))
    got = []
    with pytest.raises(CorruptRecordError, match=r"bad (data|length) CRC"):
        for e in read_events(w.path):
            got.append(e.step)
    assert got == steps


# --- threads, close, errors ----------------------------------------------------------------


def test_eight_threads_500_events_each(tmp_path):
    w = EventFileWriter(tmp_path, max_queue=7)
    barrier = threading.Barrier(8)

    def produce(tid):
        barrier.wait()
        for i in range(500):
            w.add_event(scalar_event(f"t{tid}", i, float(tid * 1000 + i)))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    events = list(read_events(w.path))  # every CRC checked
    assert len(events) == 1 + 4000
    seen = sorted((e.summary.value[0].tag, e.step, e.summary.value[0].simple_value) for e in events[1:])
    expect = sorted((f"t{t}", i, float(t * 1000 + i)) for t in range(8) for i in range(500))
    assert seen == expect
    # Per thread, the file keeps each producer's order.
    for t in range(8):
        assert [e.step for e in events[1:] if e.summary.value[0].tag == f"t{t}"] == list(range(500))
    assert len(tb_records(w.path)) == 4001


def test_close_from_another_thread_while_writing(tmp_path):
    w = EventFileWriter(tmp_path, max_queue=3)
    accepted = [[] for _ in range(4)]
    errors = []

    def produce(tid):
        i = 0
        while True:
            try:
                w.add_event(scalar_event(f"t{tid}", i, 0.0))
            except WriterClosedError:
                return
            except Exception as exc:  # any other error fails the test
                errors.append(exc)
                return
            accepted[tid].append(i)
            i += 1

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: all(len(a) > 50 for a in accepted), timeout=30)
    closer = threading.Thread(target=w.close)
    closer.start()
    closer.join(timeout=30)
    for t in threads:
        t.join(timeout=30)
    assert not closer.is_alive() and not any(t.is_alive() for t in threads)
    assert errors == []
    events = list(read_events(w.path))[1:]
    got = sorted((e.summary.value[0].tag, e.step) for e in events)
    assert got == sorted((f"t{t}", i) for t in range(4) for i in accepted[t])


def test_write_after_close_raises(tmp_path):
    w = EventFileWriter(tmp_path)
    w.add_event(scalar_event("a", 1, 1.0))
    w.close()
    w.close()  # idempotent
    w.flush()  # nothing left to flush: no-op
    with pytest.raises(WriterClosedError, match="closed"):
        w.add_event(scalar_event("a", 2, 1.0))
    with pytest.raises(WriterClosedError):
        w.add_record(b"x")
    assert [e.step for e in read_events(w.path)] == [0, 1]


def test_context_manager_closes(tmp_path):
    with EventFileWriter(tmp_path, flush_secs=1000) as w:
        w.add_event(scalar_event("a", 1, 1.0))
    with pytest.raises(WriterClosedError):
        w.add_event(scalar_event("a", 2, 1.0))
    assert len(list(read_events(w.path))) == 2


def test_producer_thread_that_raises_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the raise is intended
    w = EventFileWriter(tmp_path, flush_secs=1000)

    def produce():
        w.add_event(scalar_event("a", 7, 1.0))
        raise RuntimeError("producer died")

    t = threading.Thread(target=produce)
    t.start()
    t.join()
    w.close()
    assert [e.step for e in read_events(w.path)] == [0, 7]


class _FailingFile:
    """Stands in for the writer's file: every write fails like a full disk."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(28, "No space left on device (simulated)")

    def flush(self):
        self.real.flush()

    def close(self):
        self.real.close()


def test_background_io_error_reaches_the_caller(tmp_path):
    w = EventFileWriter(tmp_path, max_queue=2)
    w._worker._file = _FailingFile(w._worker._file)
    w.add_event(scalar_event("a", 1, 1.0))  # accepted; fails in the background
    with pytest.raises(OSError, match="simulated"):
        w.flush()
    with pytest.raises(OSError, match="simulated"):
        w.add_event(scalar_event("a", 2, 1.0))
    with pytest.raises(OSError, match="simulated"):
        w.close()
    w.close()  # reported once; later closes are quiet


def test_io_error_releases_blocked_producers(tmp_path):
    w = EventFileWriter(tmp_path, max_queue=1)
    w._worker._file = _FailingFile(w._worker._file)
    outcomes = []

    def produce():
        try:
            for i in range(1000):
                w.add_event(scalar_event("a", i, 0.0))
            outcomes.append("no error")
        except OSError:
            outcomes.append("OSError")

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert outcomes == ["OSError"] * 4
    with pytest.raises(OSError):
        w.close()


def test_argument_and_type_errors(tmp_path):
    with pytest.raises(ValueError, match="max_queue"):
        EventFileWriter(tmp_path, max_queue=-1)
    with pytest.raises(ValueError, match="flush_secs"):
        EventFileWriter(tmp_path, flush_secs=0)
    with pytest.raises(ValueError, match="filename_suffix"):
        EventFileWriter(tmp_path, filename_suffix="a/b")
    with EventFileWriter(tmp_path) as w:
        with pytest.raises(TypeError, match="add_record"):
            w.add_event(tb_event.Event(step=1))
        with pytest.raises(ValueError, match="NaN"):
            w.add_event(proto.Event(wall_time=float("nan")))
        with pytest.raises(TypeError):
            w.add_record("text")
        w.add_record(tb_event.Event(step=5).SerializeToString())
    assert [e.step for e in read_events(w.path)] == [0, 5]


def test_unbounded_queue(tmp_path):
    with EventFileWriter(tmp_path, max_queue=0, flush_secs=1000) as w:
        for i in range(300):
            w.add_event(scalar_event("a", i, 0.0))
    assert len(list(read_events(w.path))) == 301


# --- timing and process exit ------------------------------------------------------------------


def test_flush_secs_and_explicit_flush(tmp_path):
    w = EventFileWriter(tmp_path, flush_secs=3)
    try:
        after_first = os.path.getsize(w.path)
        w.add_event(scalar_event("a", 1, 1.0))
        # The first data is flushed at once ...
        assert wait_until(lambda: os.path.getsize(w.path) > after_first, timeout=2.5)
        size1 = os.path.getsize(w.path)
        t_added = time.monotonic()
        w.add_event(scalar_event("a", 2, 1.0))
        time.sleep(0.5)
        # ... later data waits for the next flush, flush_secs after the previous one.
        if time.monotonic() - t_added < 2.5:  # the check is only meaningful if we were not descheduled
            assert os.path.getsize(w.path) == size1
        assert wait_until(lambda: os.path.getsize(w.path) > size1, timeout=10)
        assert [e.step for e in read_events(w.path)] == [0, 1, 2]
    finally:
        w.close()

    w = EventFileWriter(tmp_path, flush_secs=1000)
    try:
        w.add_event(scalar_event("b", 1, 1.0))
        w.flush()
        size = os.path.getsize(w.path)
        w.add_event(scalar_event("b", 2, 1.0))
        time.sleep(0.3)
        assert os.path.getsize(w.path) == size  # flush_secs=1000: nothing new on disk
        w.flush()
        assert os.path.getsize(w.path) > size
        assert [e.step for e in read_events(w.path)] == [0, 1, 2]
    finally:
        w.close()


def test_interpreter_exit_without_close_loses_nothing(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from tbfast import proto
        from tbfast.event_file import EventFileWriter
        kept = EventFileWriter(sys.argv[1], max_queue=1000, flush_secs=1000, filename_suffix=".kept")
        dropped = EventFileWriter(sys.argv[1], max_queue=1000, flush_secs=1000, filename_suffix=".dropped")
        for i in range(300):
            e = proto.Event(wall_time=time.time(), step=i,
                            summary=proto.Summary(value=[proto.Summary.Value(tag="x", simple_value=i)]))
            kept.add_event(e)
            dropped.add_event(e)
        del dropped  # garbage-collected without close()
        print(kept.path)
        """
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    paths = sorted(os.listdir(tmp_path))
    assert len(paths) == 2
    for name in paths:
        steps = [e.step for e in read_events(os.path.join(tmp_path, name))]
        assert steps == [0] + list(range(300)), name
