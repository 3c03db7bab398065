"""Per-call costs of the writer's everyday paths:
``python -m benchmarks.writer_overhead``

- ``add_scalar``: tbfast against torch.utils.tensorboard, best of 3 rounds of N calls
  (a Python float and a 0-d CPU tensor), flush() outside the timed loop but the writer
  threads running, as in training.
- ``tbfast.watch`` on the steps it does not log: forward + backward of a small MLP with
  and without the hook (log_freq larger than the run), best of 7 interleaved rounds.
- the heavy drop-in methods, best of 3: ``add_embedding`` (10000 x 64 points with labels and
  a sprite of 10000 28x28 images) and ``add_figure`` (an 800x600 matplotlib figure).
"""

import tempfile
import time

import torch
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbfast


def add_scalar_us(make, value, n):
    w = make(tempfile.mkdtemp())
    for i in range(1000):
        w.add_scalar("loss", value, i)
    w.flush()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for i in range(n):
            w.add_scalar("loss", value, i)
        best = min(best, (time.perf_counter() - t) / n)
        w.flush()
    w.close()
    return best * 1e6


def watch_overhead_us(steps=300, rounds=7):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    x = torch.randn(16, 32)
    writer = tbfast.SummaryWriter(tempfile.mkdtemp())

    def run():
        t = time.perf_counter()
        for _ in range(steps):
            model(x).sum().backward()
        return (time.perf_counter() - t) / steps

    run()
    plain, hooked = [], []
    for _ in range(rounds):
        plain.append(run())
        tbfast.watch(model, writer, log="all", log_freq=10**9)
        hooked.append(run())
        tbfast.unwatch(model)
    writer.close()
    return min(plain) * 1e6, min(hooked) * 1e6


def heavy_ms(make):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mat, img = torch.randn(10000, 64), torch.rand(10000, 1, 28, 28)
    labels = [str(i % 10) for i in range(10000)]

    def embedding():
        w = make(tempfile.mkdtemp())
        t = time.perf_counter()
        w.add_embedding(mat, metadata=labels, label_img=img)
        dt = time.perf_counter() - t
        w.close()
        return dt

    def figure():
        fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
        ax.plot(torch.randn(1000).numpy())
        w = make(tempfile.mkdtemp())
        t = time.perf_counter()
        w.add_figure("f", fig, 0)
        dt = time.perf_counter() - t
        w.close()
        return dt

    return min(embedding() for _ in range(3)) * 1e3, min(figure() for _ in range(3)) * 1e3


def main():
    torch.set_num_threads(1)
    for label, value in (("python float", 0.5), ("0-d tensor", torch.tensor(0.5))):
        for name, make, n in (("tbfast", tbfast.SummaryWriter, 100000), ("torch", TorchWriter, 20000)):
            print(f"add_scalar {name:7s} {label:13s} {add_scalar_us(make, value, n):8.2f} us/call")
    plain, hooked = watch_overhead_us()
    print(f"watch, non-logging step: MLP forward+backward {plain:.1f} us without the hook, {hooked:.1f} us with it "
          f"(+{hooked - plain:.2f} us)")
    for name, make in (("torch", TorchWriter), ("tbfast", tbfast.SummaryWriter)):
        emb, fig = heavy_ms(make)
        print(f"{name:7s} add_embedding 10000x64 + sprite of 10000 28x28: {emb:7.0f} ms; add_figure 800x600: {fig:6.1f} ms")


if __name__ == "__main__":
    main()
