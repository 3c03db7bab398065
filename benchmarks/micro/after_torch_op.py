"""A tbfast CPU kernel right after a parallel torch op: the evidence behind the README's note
on torch's OpenMP threads.

    .venv/bin/python benchmarks/micro/after_torch_op.py

torch's CPU wheels run their intra-op parallelism on libgomp, whose worker threads keep
spinning for a while after each parallel region (GOMP_SPINCOUNT, unless OMP_WAIT_POLICY is
PASSIVE). tbfast starts its own threads per call; on a core where a torch worker spins, such a
thread waits for the scheduler to preempt it. Each case times tbfast.histogram of 10^7 bfloat16
values (2 threads by default) 40 times, after: nothing (back to back); a parallel torch op
(torch.sum of 10^6 float32) just before; the same op, then 30 ms of busy waiting on the calling
thread (the calling core stays awake; the torch worker's spin has ended). Printed: the best and
the median in ms, first with the environment as given, then again in a child process with
OMP_WAIT_POLICY=PASSIVE.
"""

import os
import statistics
import subprocess
import sys
import time

import torch

import tbfast


def _spin(seconds):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


def main():
    torch.manual_seed(0)
    x = torch.randn(10 ** 7).to(torch.bfloat16)
    y = torch.randn(10 ** 6)
    cases = {
        "back to back": lambda: None,
        "right after torch.sum": lambda: y.sum(),
        "30 ms after torch.sum": lambda: (y.sum(), _spin(0.03)),
    }
    policy = os.environ.get("OMP_WAIT_POLICY", "(default)")
    for name, before in cases.items():
        tbfast.histogram(x)
        times = []
        for _ in range(40):
            before()
            t0 = time.perf_counter()
            tbfast.histogram(x)
            times.append(time.perf_counter() - t0)
        print(f"OMP_WAIT_POLICY={policy:9s} {name:24s} best {min(times) * 1e3:6.3f} ms  "
              f"median {statistics.median(times) * 1e3:6.3f} ms", flush=True)
    if "OMP_WAIT_POLICY" not in os.environ:
        subprocess.run([sys.executable, __file__], env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, check=True)


if __name__ == "__main__":
    main()
