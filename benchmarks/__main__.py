"""``python -m benchmarks [quick|full] [--only SUITES] [--logdir DIR] [--out DIR] [--record]``

Runs each suite (benchmarks/bench_<name>.py): correctness checks first, then tbfast timed
side by side with the tools people use today, in the same process. Prints a table and the
speed-ups against the issues' targets; writes JSON naming the machine to --out (and, with
--record, JSON + Markdown to benchmarks/results/). The suites also write their summaries to
--logdir so that the run can be opened in TensorBoard.
"""

import argparse
import importlib
import os
import re
import signal
import sys
import time

from . import harness

SUITES = ("histogram", "pr_curve", "image", "distributed", "gpu", "floor")


def _targets(rows):
    """(label, measured speed-up, target) for the targets the issues name."""
    out = []
    by = {(r["suite"], r["case"], r["impl"]): r for r in rows}
    for suite, case, base, fast, target, label in TARGETS:
        if (suite, case, base) in by and (suite, case, fast) in by:
            b, f = by[(suite, case, base)], by[(suite, case, fast)]
            out.append((label, b["seconds"] / f["seconds"], target, f.get("vs_read")))
    return out


# (suite, case, baseline impl, tbfast impl, target speed-up, label)
TARGETS = [
    ("histogram", "1e7 float32, default bins", "torch add_histogram", "tbfast add_histogram", 40,
     "add_histogram 10^7 f32 vs torch"),
    ("histogram", "200 x 1e5 float32, default bins", "torch add_histogram x200", "tbfast add_histograms", 50,
     "add_histograms 200x10^5 vs torch"),
    ("histogram", "1e7 float32, 100 bins", "torch.histc(x, 100)", "tbfast.histogram(x, 100)", 1,
     "histogram kernel vs torch.histc(x,100)"),
    ("pr_curve", "binary N=1e7 T=127", "torch add_pr_curve", "tbfast add_pr_curve", 20,
     "add_pr_curve N=10^7 vs torch"),
    ("pr_curve", "multiclass N=1e6 C=10 T=127", "torch add_pr_curve x10", "tbfast add_pr_curves", 30,
     "add_pr_curves N=10^6 C=10 vs torch x10"),
    ("pr_curve", "multiclass N=1e6 C=10 T=127", "torchmetrics update+compute", "tbfast add_pr_curves", 1000,
     "add_pr_curves vs torchmetrics"),
    ("pr_curve", "multiclass N=1e6 C=10 T=127", "torchmetrics update+compute (2e5 rows x5, extrapolated)",
     "tbfast add_pr_curves", 1000, "add_pr_curves vs torchmetrics (extrap.)"),
    ("image", "add_images 64x3x64x64 float32", "torch add_images", "tbfast add_images", 5,
     "add_images 64x3x64x64 vs torch"),
    ("gpu", "2^28 float32, default bins", "torch add_histogram", "tbfast.histogram (device time)", 1000,
     "GPU 2^28 f32 vs torch add_histogram"),
    ("gpu", "2^28 float32, default bins", "torch add_histogram (2^26 x4, extrapolated)",
     "tbfast.histogram (device time)", 1000, "GPU 2^28 f32 vs torch add_histogram (extrap.)"),
    ("gpu", "2^28 float32, default bins", "device-to-device copy (floor)", "tbfast.histogram (device time)", 1,
     "GPU 2^28 f32: copy time / histogram time"),
    ("gpu", "multiclass PR N=1e7 C=100 T=201", "torchmetrics MulticlassPrecisionRecallCurve (1e6 x10, extrapolated)",
     "tbfast.pr_curve (device time)", 100, "GPU multiclass PR vs torchmetrics (extrap.)"),
    ("gpu", "add_images 64x3x256x256 float32", "torch add_images (until written)", "tbfast add_images (until written)",
     1, "GPU add_images vs torch"),
]


def _floor_targets(rows):
    """GPU targets stated against the floor: (label, measured ratio, limit) where the
    ratio must be at most the limit."""
    out = []
    for r in rows:
        if r["suite"] == "gpu" and r["impl"] == "tbfast.histograms (device time)" and "vs_copy" in r:
            out.append(("GPU model params+grads: histogram / copy time", r["vs_copy"], 2.0))
        if r["suite"] == "gpu" and r["impl"] == "tbfast.pr_curve (device time)" and "vs_copy" in r:
            out.append((f"GPU PR / read time ({r['case'][:28]})", r["vs_copy"], 2.0))
        if r["suite"] == "gpu" and r["impl"].endswith("syncs/launches"):
            out.append((f"GPU host syncs: {r['impl'].split(' syncs')[0]} ({r['case'][:24]})", r["host_syncs"], 0))
        if r["suite"] == "floor" and "limit" in r and r.get("metric") in r:  # CPU: x read-once / x float32
            out.append((f"CPU {r['case'][:34]} {r['metric']}", r[r["metric"]], r["limit"]))
    return out


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("mode", nargs="?", default="quick", choices=("quick", "full"))
    p.add_argument("--only", default=",".join(SUITES), help="comma-separated suites: " + ", ".join(SUITES))
    p.add_argument("--logdir", default=None, help="TensorBoard log dir the suites write (default runs/<mode>)")
    p.add_argument("--out", default=os.path.join("benchmarks", "out"))
    p.add_argument("--record", action="store_true", help="also write benchmarks/results/<date>-<mode>.{json,md}")
    p.add_argument("--record-dir", default=os.path.join("benchmarks", "results"),
                   help="where --record writes (scripts/gpu-check.sh points it at its output folder)")
    args = p.parse_args(argv)
    logdir = args.logdir or os.path.join("runs", args.mode)
    ctx = harness.Context(quick=args.mode == "quick", logdir=logdir, outdir=args.out)
    info = harness.machine()
    print(f"tbfast benchmarks ({args.mode}) on {info['cpu_model']} x{info['cpu_count']}, torch {info['torch']}, "
          f"numpy {info['numpy']}; TensorBoard logs in {logdir}", flush=True)
    failed = []
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    for name in names:
        if name not in SUITES:
            p.error(f"unknown suite {name!r}")
    # A run stopped by `timeout` (SIGTERM) or Ctrl-C still writes and records what it
    # measured, saying which suite it was stopped in (scripts/gpu-check.sh runs under a
    # deadline on a lent GPU).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = None
    for name in names:
        try:
            mod = importlib.import_module(f"benchmarks.bench_{name}")
        except ImportError as exc:
            print(f"[{name}] not available: {exc}")
            failed.append(name)
            continue
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        try:
            mod.run(ctx)
        except KeyboardInterrupt as exc:
            interrupted = f"stopped ({exc or 'interrupt'}) in suite {name} after {time.perf_counter() - t0:.1f} s"
            print(f"[{name}] {interrupted}: writing what was measured", flush=True)
            failed.append(name)
            break
        print(f"[{name}] done in {time.perf_counter() - t0:.1f} s", flush=True)
    signal.signal(signal.SIGTERM, previous)
    harness.annotate_read_once(ctx.rows)
    lines = ["", "Targets (speed-up = peer time / tbfast time, same run, same machine; tbfast's time also as a "
                 "multiple of reading the data once):"]
    if interrupted:
        lines.insert(1, f"INCOMPLETE RUN: {interrupted}; the rows below are what was measured before")
    for label, got, target, vs_read in _targets(ctx.rows):
        floor = f"   tbfast = {vs_read:.2f}x read-once" if vs_read else ""
        lines.append(f"  {label:44s} {got:9.1f}x   target >= {target}x   {'MET' if got >= target else 'NOT MET'}"
                     f"{floor}")
    for label, got, limit in _floor_targets(ctx.rows):
        lines.append(f"  {label:44s} {got:9.2f}    target <= {limit}    {'MET' if got <= limit else 'NOT MET'}")
    print("\n".join(lines))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    harness.write_json(os.path.join(args.out, f"{args.mode}-{stamp}.json"), ctx, args.mode)
    plots = harness.plot_suites(ctx.rows, args.out, prefix=f"{args.mode}-")
    if args.record:
        gpu = info.get("cuda") and "gpu" in args.only
        where = re.sub(r"\W+", "-", info["cuda"]).strip("-").lower() if gpu else "cpu"
        base = os.path.join(args.record_dir, f"{time.strftime('%Y-%m-%d')}-{args.mode}-{where}")
        harness.write_json(base + ".json", ctx, args.mode)
        _write_markdown(base + ".md", ctx, info, lines)
        plots = harness.plot_suites(ctx.rows, args.record_dir, prefix=os.path.basename(base) + "-")
        print(f"recorded {base}.json and .md")
    if plots:
        print("plots: " + ", ".join(plots))
    return 1 if failed else 0


def _write_markdown(path, ctx, info, target_lines):
    rows = ["| suite | case | implementation | best (ms) | median (ms) | x read-once |",
            "|---|---|---|---:|---:|---:|"]
    for r in ctx.rows:
        med = r.get("median_seconds")
        rows.append(f"| {r['suite']} | {r['case']} | {r['impl']} | {r['seconds'] * 1e3:.3f} | "
                    f"{'' if med is None else f'{med * 1e3:.3f}'} | {r.get('vs_read', '')} |")
    machine = ", ".join(f"{k}={v}" for k, v in info.items())
    text = "\n".join([f"# Benchmark results ({'quick' if ctx.quick else 'full'})", "", f"Machine: {machine}", "",
                      "```", *[l for l in target_lines if l], "```", "", *rows, ""])
    with open(path, "w") as f:
        f.write(re.sub(r"[ \t]+\n", "\n", text))


if __name__ == "__main__":
    sys.exit(main())
