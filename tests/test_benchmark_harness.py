"""The benchmark harness's own behaviour (python -m benchmarks): a run stopped by SIGTERM
(`timeout` in scripts/gpu-check.sh, on a lent GPU with a deadline) still writes and records
what it measured, and says it is incomplete."""

import json
import os
import signal
import sys
import time
import types

import pytest

import benchmarks.__main__ as bench_main


@pytest.fixture
def fake_suite(monkeypatch):
    """A suite 'fake' that records one row and then receives SIGTERM."""
    mod = types.ModuleType("benchmarks.bench_fake")

    def run(ctx):
        ctx.record("fake", "one case", "tbfast something", 0.001, median_seconds=0.002)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM did not stop the suite")

    mod.run = run
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", mod)
    monkeypatch.setattr(bench_main, "SUITES", bench_main.SUITES + ("fake",))


def test_sigterm_still_records_what_was_measured(fake_suite, tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    rc = bench_main.main(["quick", "--only", "fake", "--out", str(tmp_path / "out"), "--logdir", str(tmp_path / "runs"),
                          "--record", "--record-dir", str(tmp_path / "rec")])
    assert rc == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    (md,) = [f for f in os.listdir(tmp_path / "rec") if f.endswith(".md")]
    text = (tmp_path / "rec" / md).read_text()
    assert "INCOMPLETE RUN: stopped (SIGTERM) in suite fake" in text
    assert "| fake | one case | tbfast something | 1.000 | 2.000 |" in text
    (js,) = [f for f in os.listdir(tmp_path / "rec") if f.endswith(".json")]
    rows = json.loads((tmp_path / "rec" / js).read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [r["impl"] for r in rows] == ["tbfast something"]
