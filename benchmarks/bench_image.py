"""Image summaries, CPU: tbfast vs torch.utils.tensorboard and tensorboardX, side by side.

Correctness first: tbfast's decoded pixels must equal torch's ``add_images`` pixels
(and tensorboardX's where both are defined), else the suite raises. Then, per case:

* ``add_images`` end to end (pixels -> Summary proto): torch, tensorboardX, tbfast;
* grid time (tensor -> uint8 HWC) and encode time (uint8 -> PNG) separately, for tbfast
  and for torch's pieces (its ``convert_to_HWC`` + conversion, and PIL's encoder);
* PNG sizes: tbfast (default: the native encoder; zlib level 1 Z_RLE, the previous
  default; zlib level 6) against PIL's for the same pixels.

Images are smooth synthetic pictures (gradients, discs) with mild noise, seeded.
"""

import io
import os
import warnings

import numpy as np

SUITE = "image"


def synthetic_images(n, c, h, w, seed=0):
    """N x C x H x W float32 in [0, 1]: sinusoidal gradients, a flat disc, noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        for ch in range(c):
            f = rng.uniform(1, 6, 2)
            ph = rng.uniform(0, 6, 2)
            out[i, ch] = 0.5 + 0.4 * np.sin(f[0] * 6 * x + ph[0]) * np.cos(f[1] * 6 * y + ph[1])
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        disc = ((x - cx) ** 2 + (y - cy) ** 2) < (0.3 * r) ** 2
        out[i][:, disc] = rng.uniform(0, 1, (c, 1))
    out += rng.normal(0, 0.01, out.shape).astype(np.float32)
    return np.clip(out, 0, 1)


def _decode(png):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))


def _pil_png(pixels):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _peers():
    peers = {}
    try:
        from torch.utils.tensorboard import summary as torch_summary

        peers["torch"] = torch_summary
    except ImportError:
        pass
    try:
        from tensorboardX import summary as tbx_summary

        peers["tensorboardX"] = tbx_summary
    except ImportError:
        pass
    return peers


def run(ctx):
    import torch

    from tbfast import png
    from tbfast.image_logging import image_summary, torch_image_pixels

    cases = [(8, 3, 32, 32), (64, 3, 64, 64)] + ([] if ctx.quick else [(16, 3, 256, 256)])
    peers = _peers()
    repeat = 5 if ctx.quick else 10
    for shape in cases:
        case = "add_images {}x{}x{}x{} float32".format(*shape)
        x = torch.from_numpy(synthetic_images(*shape, seed=shape[0]))

        # ---- correctness: decoded pixels equal torch's (and tensorboardX's, no clip needed here)
        pixels = torch_image_pixels(x, "NCHW")
        ours = image_summary("img", pixels)
        got = _decode(ours.value[0].image.encoded_image_string)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, mod in peers.items():
                theirs = mod.image("img", x, dataformats="NCHW")
                want = _decode(theirs.value[0].image.encoded_image_string)
                if not np.array_equal(got, want):
                    raise AssertionError(f"{case}: tbfast pixels differ from {name}'s")

        # ---- end to end: tensor -> Summary proto
        ctx.read_once(SUITE, case, x, size=x.numel())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, mod in peers.items():
                ctx.time(SUITE, case, f"{name} add_images", lambda mod=mod: mod.image("img", x, dataformats="NCHW"),
                         repeat=repeat, size=x.numel())
        ctx.time(SUITE, case, "tbfast add_images",
                 lambda: image_summary("img", torch_image_pixels(x, "NCHW")), repeat=repeat, size=x.numel())

        # ---- pieces: grid and encode separately
        pix_np = pixels.numpy()
        if "torch" in peers:
            from torch.utils.tensorboard._utils import convert_to_HWC

            def torch_grid():
                hwc = convert_to_HWC(x.numpy(), "NCHW")
                return (hwc.astype(np.float32) * 255).clip(0, 255).astype(np.uint8)

            if not np.array_equal(torch_grid(), pix_np):
                raise AssertionError(f"{case}: tbfast grid differs from torch's")
            ctx.time(SUITE, case, "torch grid+convert", torch_grid, repeat=repeat)
        ctx.time(SUITE, case, "tbfast grid", lambda: torch_image_pixels(x, "NCHW"), repeat=repeat)
        pil_png = _pil_png(pix_np)
        ctx.time(SUITE, case, "PIL encode (torch's)", lambda: _pil_png(pix_np), repeat=repeat, bytes=len(pil_png))
        for label, kw in (("tbfast encode", {}), ("tbfast encode zlib level=1 rle", dict(level=1, strategy="rle")),
                          ("tbfast encode level=6 default", dict(level=6, strategy="default"))):
            data = png.encode_png(pixels, **kw)
            if not np.array_equal(_decode(data), pix_np):
                raise AssertionError(f"{case}: {label} does not decode to the pixels")
            ctx.time(SUITE, case, label, lambda kw=kw: png.encode_png(pixels, **kw), repeat=repeat,
                     bytes=len(data), size_vs_pil=round(len(data) / len(pil_png), 3))

        _write_logdir(ctx, x, shape)


def _write_logdir(ctx, x, shape):
    """The images, written by a tbfast writer (if present) for a look in TensorBoard."""
    if not ctx.logdir:
        return
    try:
        from tbfast import SummaryWriter
    except ImportError:
        return
    with SummaryWriter(os.path.join(ctx.logdir, "bench_image")) as w:
        tag = "images_{}x{}x{}x{}".format(*shape)
        w.add_images(tag, x, 0)
        w.add_image_grid(tag + "_grid", x, 0, padding=2, normalize=True)
