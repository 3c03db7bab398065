"""tbfast.histogram against reading the same tensor once, timed two ways: the evidence behind
the README's warm ratios beside the floor suite's.

    .venv/bin/python benchmarks/micro/warm_vs_collected.py

warm: back-to-back loops of each call (best of 30), cores awake and the tensor's bytes in
cache. collected: the floor suite's protocol, gc.collect() before each call and the two calls
interleaved (best of 15). 10^7 normal values, torch's and tbfast's default threads.
"""

import gc
import time

import torch

import tbfast


def _warm(fn, n=30):
    fn()
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _collected(fns, n=15):
    best = [float("inf")] * len(fns)
    for _ in range(n):
        for k, fn in enumerate(fns):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(10 ** 7).to(dtype)
        hist, read = (lambda: tbfast.histogram(x)), (lambda: x.sum())
        wh, wr = _warm(hist), _warm(read)
        cr, ch = _collected([read, hist])
        print(f"{str(dtype):15s} warm: tbfast {wh * 1e3:.3f} ms, read {wr * 1e3:.3f} ms = {wh / wr:.2f}x | "
              f"collected: tbfast {ch * 1e3:.3f} ms, read {cr * 1e3:.3f} ms = {ch / cr:.2f}x", flush=True)


if __name__ == "__main__":
    main()
