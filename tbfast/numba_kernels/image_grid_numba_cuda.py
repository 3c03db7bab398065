"""Numba CUDA fallback for the image-grid op (used when tbfast._C_cuda is not built).

Same semantics as csrc/image_grid.h and the CPU kernel (csrc/cpu/image_grid_cpu.cpp):
torchvision's make_grid layout and normalisation, then torch's conversion to uint8, the
canvas byte-equal to the CPU's. Written without warp intrinsics, so the very same
kernels run under the Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1), where the tests
exercise them.

The N images (CHW views of any strides) are read as one N x C x H x W array: the view
itself for one image, else torch.stack on the device (a copy in the input dtype, on the
launch stream). Launches, all on one stream, nothing read back to the host:

* normalize without value_range only: ``ranges`` (N * G blocks of TPB threads, G blocks
  per image, each striding over chunks of CHUNK pixels of its image in C, H, W order)
  keeps each thread's finite min/max in the compute type (float64 for float64 input,
  float32 for everything else) and reduces them per block (shared-memory tree) into
  partials [N, G, 2]; ``finalize`` (one block) folds them per image into table[k]
  ([0, 1] for an image with no finite value) and over every image into table[N] (the
  global data range, [0, 1] when nothing is finite). min/max are exact, so any order
  gives the same table.
* ``canvas``: one work item per canvas byte (row, column, channel), CHUNK items per
  block and grid-stride beyond MAX_BLOCKS blocks; every byte is written: the pad byte
  outside the images, else the converted pixel with lo/hi from value_range (kernel
  arguments), table[k] (scale_each) or table[N] (global data range), read from device
  memory.

Float16 and bfloat16 arrive as int16 bit patterns and are decoded exactly; bool as
uint8 (any non-zero byte is 1); other integers are converted to float64, then float32,
as the C++ kernel does.
"""

import math
from contextlib import nullcontext

import numba
import numpy as np
from numba import cuda

from .. import _dtypes
from .histogram_numba_cuda import SIMULATOR, LazyKernels, _as_numba, _load_bf16, _load_f16, _stream

TPB = 128  # threads per block (a power of two: the range tree halves it)
ITEMS = 4  # bytes (canvas) or pixels (ranges) per thread per chunk
CHUNK = TPB * ITEMS
MAX_BLOCKS = 1024

# Canvas normalisation modes (csrc/image_grid.h GridNorm).
NORM_NONE, NORM_RANGE, NORM_PER_IMAGE, NORM_DATA_RANGE = 0, 1, 2, 3

_F64 = numba.float64
_F0 = np.float32(0.0)
_F255 = np.float32(255.0)


# ---------------------------------------------------------------------------------------
# Device functions
# ---------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _load_plain(x, idx, is_f64, is_bool):
    """Pixel at idx (k, c, y, x) in the compute type, held in a float64: float64 as is,
    bool 0/1, anything else through float64 to float32 (uint8 and float32 exactly)."""
    v = x[idx]
    if is_f64:
        return np.float64(v)
    if is_bool:
        return 1.0 if v != 0 else 0.0
    return np.float64(np.float32(np.float64(v)))


@cuda.jit(device=True)
def _load_half(x, idx, is_f64, is_bool):
    return _load_f16(x, idx)  # exact, a float32 value


@cuda.jit(device=True)
def _load_bhalf(x, idx, is_f64, is_bool):
    return _load_bf16(x, idx)


@cuda.jit(device=True)
def _clip_truncate(y):
    """csrc/image_grid.h clip_truncate: clip a float32 to [0, 255] (NaN -> 0), truncate."""
    c = y if y > _F0 else _F0
    c = c if c < _F255 else _F255
    return np.uint8(np.int32(c))


@cuda.jit(device=True)
def _normalized_byte(v, lo, hi, is_f64):
    """torchvision's clamp / sub / div by max(hi - lo, 1e-5) (divisor formed in float64),
    in float64 for float64 input and float32 otherwise, then * 255 in float32."""
    d = hi - lo
    d = d if d > 1e-5 else 1e-5
    if is_f64:
        c = lo if v < lo else v  # NaN stays NaN
        c = hi if c > hi else c
        return _clip_truncate(np.float32((c - lo) / d) * _F255)
    v32 = np.float32(v)
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    c32 = lo32 if v32 < lo32 else v32
    c32 = hi32 if c32 > hi32 else c32
    return _clip_truncate(((c32 - lo32) / np.float32(d)) * _F255)


@cuda.jit(device=True)
def _block_minmax(tid, mn, mx, s_mn, s_mx):
    """Block-wide min and max of every thread's (mn, mx) into s_mn[0], s_mx[0]: a halving
    tree over the TPB shared slots (min/max are exact, so any order gives the same)."""
    s_mn[tid] = mn
    s_mx[tid] = mx
    cuda.syncthreads()
    width = TPB // 2
    while width > 0:
        if tid < width:
            s_mn[tid] = min(s_mn[tid], s_mn[tid + width])
            s_mx[tid] = max(s_mx[tid], s_mx[tid + width])
        cuda.syncthreads()
        width //= 2


def _build(load):
    """The range and canvas kernels for one pixel loader (per dtype kind); numba
    specialises them per array dtype on first use."""

    @cuda.jit
    def ranges(x, C, H, W, chunks, per_image, is_f64, is_bool, part):
        s_mn = cuda.shared.array(TPB, _F64)
        s_mx = cuda.shared.array(TPB, _F64)
        tid = cuda.threadIdx.x
        k = cuda.blockIdx.x // per_image
        g = cuda.blockIdx.x - k * per_image
        hw = H * W
        npix = C * hw
        mn = math.inf
        mx = -math.inf
        ch = np.int64(g)
        while ch < chunks:
            base = ch * CHUNK + tid
            for it in range(ITEMS):
                p = base + it * TPB
                if p < npix:
                    c = p // hw
                    rem = p - c * hw
                    y = rem // W
                    v = load(x, (k, c, y, rem - y * W), is_f64, is_bool)
                    if v - v == 0:  # finite
                        mn = min(mn, v)
                        mx = max(mx, v)
            ch += per_image
        _block_minmax(tid, mn, mx, s_mn, s_mx)
        if tid == 0:
            part[k, g, 0] = s_mn[0]
            part[k, g, 1] = s_mx[0]

    @cuda.jit
    def canvas(x, n, C, H, W, out_c, out_w, cols, pad, pad_byte, total, nchunks, norm, lo_in, hi_in, table,
               is_f64, is_bool, is_u8, out):
        tid = cuda.threadIdx.x
        cell_h = H + pad
        cell_w = W + pad
        c = np.int64(cuda.blockIdx.x)
        while c < nchunks:
            base = c * CHUNK + tid
            for it in range(ITEMS):
                e = base + it * TPB
                if e < total:
                    val = pad_byte
                    ch = e % out_c
                    t = e // out_c
                    col = t % out_w
                    rr = t // out_w - pad
                    cc = col - pad
                    if rr >= 0 and cc >= 0:
                        band = rr // cell_h
                        iy = rr - band * cell_h
                        gx = cc // cell_w
                        ix = cc - gx * cell_w
                        k = band * cols + gx
                        if iy < H and ix < W and k < n:
                            idx = (k, ch if C > 1 else 0, iy, ix)
                            if norm == NORM_NONE:
                                if is_u8:
                                    val = np.uint8(x[idx])  # torch's scale factor 1: unchanged
                                else:
                                    val = _clip_truncate(np.float32(load(x, idx, is_f64, is_bool)) * _F255)
                            else:
                                lo = lo_in
                                hi = hi_in
                                if norm == NORM_PER_IMAGE:
                                    lo = table[k, 0]
                                    hi = table[k, 1]
                                elif norm == NORM_DATA_RANGE:
                                    lo = table[n, 0]
                                    hi = table[n, 1]
                                val = _normalized_byte(load(x, idx, is_f64, is_bool), lo, hi, is_f64)
                    out[e] = val
            c += cuda.gridDim.x

    return ranges, canvas


@cuda.jit
def _finalize(part, n, per_image, table):
    """table[k] = finite range of image k ([0, 1] when empty); table[n] = over all."""
    s_mn = cuda.shared.array(TPB, _F64)
    s_mx = cuda.shared.array(TPB, _F64)
    tid = cuda.threadIdx.x
    gmn = math.inf
    gmx = -math.inf
    k = tid
    while k < n:
        mn = math.inf
        mx = -math.inf
        for g in range(per_image):
            mn = min(mn, part[k, g, 0])
            mx = max(mx, part[k, g, 1])
        gmn = min(gmn, mn)
        gmx = max(gmx, mx)
        if not (mn <= mx):
            mn = 0.0
            mx = 1.0
        table[k, 0] = mn
        table[k, 1] = mx
        k += TPB
    _block_minmax(tid, gmn, gmx, s_mn, s_mx)
    if tid == 0:
        lo = s_mn[0]
        hi = s_mx[0]
        if not (lo <= hi):
            lo = 0.0
            hi = 1.0
        table[n, 0] = lo
        table[n, 1] = hi


_KERNELS = LazyKernels(lambda load: _build(load), {_dtypes.FLOAT16: (_load_half,), _dtypes.BFLOAT16: (_load_bhalf,)},
                       default=(_load_plain,))


# ---------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------


def run(plan):
    """Set ``plan.out`` (uint8 [out_height, out_width, out_channels] on the images'
    device) for a tbfast.image.GridPlan; return it. Enqueued on ``plan.stream`` when the
    plan has one (an int handle), else on torch's current stream; never waits."""
    if SIMULATOR:
        _run(plan, 0)
        return plan.out
    import torch

    dev = plan.images[0].device
    if dev.type != "cuda":
        raise RuntimeError("image_grid_numba_cuda needs CUDA tensors (or NUMBA_ENABLE_CUDASIM=1)")
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    handle = getattr(plan, "stream", None)
    handle = int(handle) if handle is not None else torch.cuda.current_stream(idx).cuda_stream
    with cuda.gpus[idx]:
        stream = _stream(idx, handle) if handle else cuda.legacy_default_stream()
        # The stack copy, scratch and output come from torch's caching allocator, on the
        # launch stream.
        with torch.cuda.stream(torch.cuda.ExternalStream(handle, device=dev)) if handle else nullcontext():
            _run(plan, stream)
    return plan.out


def _run(plan, stream):
    import torch

    n = len(plan.images)
    C, H, W = int(plan.channels), int(plan.height), int(plan.width)
    code = int(plan.dtype)
    batch = torch.stack(plan.images) if n > 1 else plan.images[0].unsqueeze(0)
    x = _as_numba(batch)
    out_t = torch.empty((plan.out_height, plan.out_width, plan.out_channels), dtype=torch.uint8,
                        device=plan.images[0].device)
    out = _as_numba(out_t.view(-1))
    dev = out_t.device
    is_f64, is_bool, is_u8 = code == _dtypes.FLOAT64, code == _dtypes.BOOL, code == _dtypes.UINT8
    ranges, canvas = _KERNELS(code)

    norm, lo, hi = NORM_NONE, 0.0, 1.0
    table_t = torch.empty((n + 1, 2), dtype=torch.float64, device=dev)
    table = _as_numba(table_t)
    if plan.normalize:
        if plan.value_range is not None:
            norm, (lo, hi) = NORM_RANGE, (float(plan.value_range[0]), float(plan.value_range[1]))
        else:
            norm = NORM_PER_IMAGE if plan.scale_each else NORM_DATA_RANGE
            chunks = -(-(C * H * W) // CHUNK)
            per_image = max(1, min(chunks, MAX_BLOCKS // n))
            part = _as_numba(torch.empty((n, per_image, 2), dtype=torch.float64, device=dev))
            ranges[n * per_image, TPB, stream](x, C, H, W, chunks, per_image, is_f64, is_bool, part)
            _finalize[1, TPB, stream](part, n, per_image, table)

    total = plan.out_height * plan.out_width * plan.out_channels
    nchunks = -(-total // CHUNK)
    canvas[min(nchunks, MAX_BLOCKS), TPB, stream](
        x, n, C, H, W, int(plan.out_channels), int(plan.out_width), int(plan.cols), int(plan.padding),
        np.uint8(plan.pad_byte), total, nchunks, norm, np.float64(lo), np.float64(hi), table, is_f64, is_bool,
        is_u8, out)
    plan.out = out_t
    return out_t
