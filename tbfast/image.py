"""Image grids: torchvision's ``make_grid`` fused with torch's conversion to uint8.

:func:`image_grid` validates and lays out the input once (:func:`plan_grid`), then one
backend turns it into a uint8 HWC canvas in a single pass over the pixels:

* ``native`` (C++, csrc/cpu/image_grid_cpu.cpp): reads every pixel once, in place, in
  any layout (strides), on all CPU threads; a min/max pass first when the range is
  taken from the data.
* ``numba`` (tbfast/numba_kernels/image_grid_numba.py): the same loops, compiled.
* ``reference``: plain torch ops; it also runs on CUDA tensors until a CUDA kernel exists.

Pixel semantics, exact to the bit (spec 1.6 and 2):

* layout: ``cols = min(nrow, N)``, ``rows = ceil(N / cols)``; canvas
  ``rows*(H+padding)+padding`` by ``cols*(W+padding)+padding``; image k at cell
  ``divmod(k, cols)``; a single image gets no padding; unused cells hold ``pad_value``.
* normalize: torchvision's ``clamp(lo, hi)``, ``- lo``, ``/ max(hi - lo, 1e-5)``; lo/hi from
  ``value_range`` or the min/max (of each image with ``scale_each``). Computed in float64
  for float64 input and in float32 for everything else. torchvision computes float16 and
  bfloat16 in their own precision; tbfast widens them to float32 (exact) and so can
  differ from torchvision by one level on such inputs. Ranges taken from the data use
  the finite values only (torch: one NaN makes the whole grid NaN); an image with no
  finite value uses [0, 1]. uint8 input with ``normalize=True`` (an error in
  torchvision) is normalised from its 0..255 values.
* conversion (torch's ``add_image``): ``float32(v) * 255``, clip to [0, 255], truncate;
  uint8 input without normalize is copied unchanged; NaN becomes 0.
* ``pad_value`` is in the input's units, rounded to the input's dtype as torchvision's
  canvas does (uint8 input: an integer 0..255), and in [0, 1] units when normalize=True.
* 1-channel input stays 1 channel (a grayscale PNG). torchvision repeats it to RGB;
  the pixels are the same. torch-compatible writer methods repeat it (colorspace 3).
"""

import math

import numpy as np

from . import _device, _dtypes, _native, _tensor, backends

__all__ = ["image_grid"]

_FORMATS = {4: "NCHW", 3: "CHW", 2: "HW"}
_CHANNELS = (1, 3, 4)
NORM_NONE, NORM_RANGE, NORM_PER_IMAGE, NORM_DATA_RANGE = 0, 1, 2, 3  # csrc/image_grid.h GridNorm


def _torch():
    import torch

    return torch


class GridPlan:
    """A validated grid job, the one thing every backend receives.

    images: list of N CHW torch views (no copies), all on ``device``; dtype: code
    (tbfast._dtypes); channels, height, width; out_channels (3 when 1 is repeated to
    RGB); cols, rows, padding, out_height, out_width; pad_byte (the canvas value outside
    images, already converted); normalize, value_range ((lo, hi) floats or None),
    scale_each; device ('cpu' or 'cuda').
    """

    __slots__ = ("images", "dtype", "channels", "height", "width", "out_channels", "cols", "rows", "padding",
                 "out_height", "out_width", "pad_byte", "normalize", "value_range", "scale_each", "device", "out",
                 "stream", "torch_stream")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def device_type(self):
        return self.device

    @property
    def num_images(self):
        return len(self.images)

    @property
    def out_shape(self):
        return (self.out_height, self.out_width, self.out_channels)

    def cell_origin(self, k):
        """(top, left) canvas pixel of image k."""
        y, x = divmod(k, self.cols)
        return y * (self.height + self.padding) + self.padding, x * (self.width + self.padding) + self.padding

    def empty_output(self):
        return _torch().empty(self.out_shape, dtype=_torch().uint8, device=self.images[0].device)


def _check_format(dataformats):
    if not isinstance(dataformats, str):
        raise TypeError(f"dataformats must be a string such as 'NCHW', got {type(dataformats).__name__}")
    fmt = dataformats.upper()
    if len(set(fmt)) != len(fmt) or sorted(fmt) != sorted(_FORMATS.get(len(fmt), "")):
        raise ValueError(
            f"dataformats must be a permutation of NCHW, CHW or HW (torch's letters, no repeats), got {dataformats!r}"
        )
    return fmt


def _as_tensor(x, name):
    """A torch view of one image input, checked by the shared descriptor rules."""
    return _tensor.describe(x, name, layout="strided").owner.detach()


def _to_chw(t, fmt, name):
    """View of ``t`` (laid out as ``fmt``, 2 or 3 letters) as C x H x W."""
    if t.dim() != len(fmt):
        raise ValueError(f"{name} has shape {tuple(t.shape)} ({t.dim()} dims) but dataformats {fmt!r} "
                         f"has {len(fmt)} letters")
    if len(fmt) == 2:
        return t.permute([fmt.index(c) for c in "HW"]).unsqueeze(0)
    return t.permute([fmt.index(c) for c in "CHW"])


def _pad_byte(pad_value, dtype_code, float_units):
    """Canvas byte for ``pad_value``: rounded to the input dtype, then torch's conversion."""
    torch = _torch()
    try:
        pv = float(pad_value)
    except (TypeError, ValueError):
        raise TypeError(f"pad_value must be a number, got {pad_value!r}") from None
    if float_units or dtype_code in _dtypes.FLOATING:
        if not float_units and dtype_code == _dtypes.BFLOAT16:
            v = np.float32(torch.tensor(pv, dtype=torch.bfloat16).float().item())
        elif not float_units and dtype_code == _dtypes.FLOAT16:
            v = np.float32(np.float16(pv))
        else:
            v = np.float32(pv)  # float32 and float64 (float64 is rounded to float32 by torch's cast)
        with np.errstate(invalid="ignore", over="ignore"):
            y = v * np.float32(255.0)
        return 0 if not y > 0 else 255 if y >= 255 else int(y)
    if dtype_code == _dtypes.UINT8:
        if not 0.0 <= pv < 256.0:
            raise ValueError(f"pad_value {pad_value!r} does not fit uint8 input (0..255; torchvision's canvas is uint8)")
        return int(pv)
    if dtype_code == _dtypes.BOOL:
        return 255 if pv != 0 else 0
    return 255 if int(pv) > 0 else 0  # other integers: torch scales by 255, so any value >= 1 is white


def plan_grid(images, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0,
              dataformats="NCHW", gray_to_rgb=False):
    """Validate the arguments of :func:`image_grid` and lay the grid out (no pixel work).

    ``gray_to_rgb`` repeats 1-channel input to 3 channels (torch's ``add_image`` does).
    Raises TypeError / ValueError that say what was expected.
    """
    fmt = _check_format(dataformats)
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("image_grid: got an empty list of images; expected at least one")
        item_fmt = fmt.replace("N", "")
        views = [_to_chw(_as_tensor(im, f"images[{i}]"), item_fmt, f"images[{i}]") for i, im in enumerate(images)]
        first = views[0]
        for i, v in enumerate(views[1:], 1):
            if v.shape != first.shape or v.dtype != first.dtype or v.device != first.device:
                raise ValueError(
                    f"images[{i}] is {tuple(v.shape)} {v.dtype} on {v.device} (as CHW) but images[0] is "
                    f"{tuple(first.shape)} {first.dtype} on {first.device}; all images must match"
                )
    else:
        t = _as_tensor(images, "images")
        if len(fmt) == 4:
            if t.dim() != 4:
                raise ValueError(f"images has shape {tuple(t.shape)} ({t.dim()} dims) but dataformats {fmt!r} "
                                 f"has 4 letters")
            batch = t.permute([fmt.index(c) for c in "NCHW"])
            views = list(batch.unbind(0))
            if not views:
                raise ValueError(f"image_grid: got no images (N = 0 in shape {tuple(t.shape)}); expected at least one")
        else:
            views = [_to_chw(t, fmt, "images")]
    c, h, w = views[0].shape
    if c not in _CHANNELS:
        where = f"dim {fmt.index('C')} of dataformats {fmt!r}" if "C" in fmt else "C"
        raise ValueError(f"image_grid: expected 1, 3 or 4 channels ({where}), got {c}; shape as CHW {(c, h, w)}")
    if h == 0 or w == 0:
        raise ValueError(f"image_grid: images are empty (H x W = {h} x {w})")
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"nrow must be an integer >= 1, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    if value_range is not None:
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
            raise TypeError(f"value_range must be a (low, high) tuple, got {value_range!r}")
        value_range = (float(value_range[0]), float(value_range[1]))
    code = _dtypes.code_of(views[0].dtype)
    n = len(views)
    pad = 0 if n == 1 else int(padding)
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)
    return GridPlan(
        images=views, dtype=code, channels=c, height=h, width=w,
        out_channels=3 if (c == 1 and gray_to_rgb) else c,
        cols=cols, rows=rows, padding=pad, out_height=rows * (h + pad) + pad, out_width=cols * (w + pad) + pad,
        pad_byte=_pad_byte(pad_value, code, bool(normalize)),
        normalize=bool(normalize), value_range=value_range if normalize else None,
        scale_each=bool(scale_each) and bool(normalize),
        device="cuda" if views[0].is_cuda else "cpu",
    )


def run_plan(plan, backend=None, stream=None):
    """Run a :class:`GridPlan` on the selected backend; uint8 HWC torch tensor on the
    plan's device (CUDA: enqueued on ``stream``, default the current one; never waited for)."""
    plan.stream = plan.torch_stream = None
    if plan.device == "cuda":
        index = plan.images[0].device.index
        plan.stream = _device.resolve_stream(stream, index)
        plan.torch_stream = _device.torch_stream(plan.stream, index)
    with _device.StreamScope(plan):
        backends.dispatch("image_grid", plan, backend)
    return plan.out


@_tensor.untraced
def image_grid(images, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0,
               dataformats="NCHW", stream=None):
    """Lay ``images`` out as torchvision's ``make_grid`` does and convert to uint8 as
    torch's ``add_image`` does, in one pass.

    images: a tensor or array laid out as ``dataformats`` (any permutation of NCHW, CHW
    or HW), or a list of per-image tensors laid out as ``dataformats`` without the N
    (CHW by default). 1, 3 or 4 channels; float16, bfloat16, float32, float64, uint8
    (and bool / integers, scaled by 255 like torch). Strided views are read in place.

    Returns a uint8 ``(H_out, W_out, C)`` tensor on the input's device (a NumPy array
    for NumPy input); C is the input's channel count (1 stays grayscale).

    Raises ValueError for empty input, a channel count other than 1/3/4, a shape that
    does not match ``dataformats``, ``nrow < 1`` or ``padding < 0``; TypeError for
    unsupported types. The exact pixel semantics are in this module's docstring.
    """
    numpy_in = isinstance(images, np.ndarray) or (
        isinstance(images, (list, tuple)) and len(images) > 0 and isinstance(images[0], np.ndarray))
    plan = plan_grid(images, nrow, padding, normalize, value_range, scale_each, pad_value, dataformats)
    out = run_plan(plan, stream=stream)
    return out.numpy() if numpy_in else out


def global_range(ranges):
    """(lo, hi) over per-image finite [min, max] rows; [0, 1] when nothing is finite."""
    lo, hi = float(np.min(ranges[:, 0])), float(np.max(ranges[:, 1]))
    if not lo <= hi:
        return 0.0, 1.0
    return lo, hi


# ---------------------------------------------------------------- native (C++) ----------


def _grid_native(plan):
    mod, _ = _native.cpu()
    n = plan.num_images
    ptrs = np.array([im.data_ptr() for im in plan.images], dtype=np.uint64)
    strides = np.array([im.stride() for im in plan.images], dtype=np.int64).reshape(n, 3)
    ranges = np.zeros((n, 2), dtype=np.float64)
    out = plan.empty_output()
    norm, lo, hi = NORM_NONE, 0.0, 1.0
    def args():
        return dict(num_images=n, data=ptrs.ctypes.data, strides=strides.ctypes.data, dtype=plan.dtype,
                    channels=plan.channels, out_channels=plan.out_channels, height=plan.height, width=plan.width,
                    cols=plan.cols, rows=plan.rows, padding=plan.padding, out_height=plan.out_height,
                    out_width=plan.out_width, out_row_stride=plan.out_width * plan.out_channels,
                    pad_byte=plan.pad_byte, norm=norm, lo=lo, hi=hi, ranges=ranges.ctypes.data, out=out.data_ptr(),
                    num_threads=_native.num_threads())

    if plan.normalize:
        if plan.value_range is not None:
            norm, (lo, hi) = NORM_RANGE, plan.value_range
        else:
            mod.image_ranges(**args())
            if plan.scale_each:
                norm = NORM_PER_IMAGE
            else:
                norm, (lo, hi) = NORM_RANGE, global_range(ranges)
    mod.image_grid(**args())
    plan.out = out


def _grid_native_cuda(plan):
    """csrc/cuda/image_grid_cuda.cu: ranges (when normalising from the data) and the
    canvas on the plan's stream; the range is reduced and read on the device."""
    mod, why = _native.cuda()
    if mod is None:
        raise backends.BackendUnavailable(why)
    torch = _torch()
    n = plan.num_images
    dev = plan.images[0].device
    table = np.concatenate([np.array([im.data_ptr() for im in plan.images], dtype=np.int64),
                            np.array([im.stride() for im in plan.images], dtype=np.int64).reshape(-1)])
    meta = _device.to_device(table, dev)
    ranges = torch.empty((n, 2), dtype=torch.float64, device=dev)
    out = plan.empty_output()
    norm, lo, hi = NORM_NONE, 0.0, 1.0
    if plan.normalize:
        if plan.value_range is not None:
            norm, (lo, hi) = NORM_RANGE, plan.value_range
        else:
            norm = NORM_PER_IMAGE if plan.scale_each else NORM_DATA_RANGE
    mod.image_grid_cuda(num_images=n, data=meta.data_ptr(), strides=meta.data_ptr() + 8 * n, dtype=plan.dtype,
                        channels=plan.channels, out_channels=plan.out_channels, height=plan.height, width=plan.width,
                        cols=plan.cols, rows=plan.rows, padding=plan.padding, out_height=plan.out_height,
                        out_width=plan.out_width, out_row_stride=plan.out_width * plan.out_channels,
                        pad_byte=plan.pad_byte, norm=norm, lo=lo, hi=hi, ranges=ranges.data_ptr(),
                        out=out.data_ptr(), stream=plan.stream, device=dev.index)
    plan.out = out


def _grid_numba_cuda(plan):
    from .numba_kernels import image_grid_numba_cuda as k

    k.run(plan)


# ---------------------------------------------------------------- numba -----------------


def _grid_numba(plan):
    from .numba_kernels import image_grid_numba as k

    torch = _torch()
    batch = torch.stack(plan.images) if len(plan.images) > 1 else plan.images[0].unsqueeze(0)
    if plan.dtype in (_dtypes.FLOAT16, _dtypes.BFLOAT16):
        batch = batch.float()  # exact; the compute type of 16-bit floats is float32
    arr = batch.numpy()
    is_f64, is_u8 = plan.dtype == _dtypes.FLOAT64, plan.dtype == _dtypes.UINT8
    n = plan.num_images
    lo = np.zeros(n, np.float64)
    hi = np.ones(n, np.float64)
    norm = NORM_NONE
    if plan.normalize:
        norm = NORM_RANGE
        if plan.value_range is not None:
            lo[:], hi[:] = plan.value_range
        else:
            ranges = k.image_ranges(arr, is_f64)
            if plan.scale_each:
                empty = ~(ranges[:, 0] <= ranges[:, 1])
                ranges[empty] = (0.0, 1.0)
                lo[:], hi[:] = ranges[:, 0], ranges[:, 1]
            else:
                lo[:], hi[:] = global_range(ranges)
    out = np.empty(plan.out_shape, np.uint8)
    k.image_grid(arr, is_f64, is_u8, norm, lo, hi, plan.cols, plan.padding, plan.pad_byte, out)
    plan.out = torch.from_numpy(out)


# ---------------------------------------------------------------- reference (torch) -----


def _finite_minmax(x, dims):
    torch = _torch()
    fin = torch.isfinite(x)
    lo = torch.where(fin, x, torch.full_like(x, math.inf)).amin(dim=dims)
    hi = torch.where(fin, x, torch.full_like(x, -math.inf)).amax(dim=dims)
    return lo.double(), hi.double()


def _grid_reference(plan):
    torch = _torch()
    x = torch.stack(plan.images)  # N, C, H, W
    n = plan.num_images
    if plan.normalize:
        xc = x.double() if plan.dtype == _dtypes.FLOAT64 else x.float()
        if plan.value_range is not None:
            lo = torch.full((n,), plan.value_range[0], dtype=torch.float64, device=x.device)
            hi = torch.full((n,), plan.value_range[1], dtype=torch.float64, device=x.device)
        else:
            lo, hi = _finite_minmax(xc, (1, 2, 3))
            if not plan.scale_each:
                lo, hi = lo.amin().expand(n), hi.amax().expand(n)
            empty = ~(lo <= hi)
            lo = torch.where(empty, torch.zeros_like(lo), lo)
            hi = torch.where(empty, torch.ones_like(hi), hi)
        d = torch.clamp(hi - lo, min=1e-5)  # max(hi - lo, 1e-5) in double, like Python's
        shape = (n, 1, 1, 1)
        lo_c, hi_c, d_c = (v.to(xc.dtype).view(shape) for v in (lo, hi, d))
        y = (torch.minimum(torch.maximum(xc, lo_c), hi_c) - lo_c) / d_c
        v = y.float() * 255.0
    elif plan.dtype == _dtypes.UINT8:
        v = None
    else:
        v = x.float() * 255.0
    if v is not None:
        x = torch.nan_to_num(v, nan=0.0).clamp(0.0, 255.0).to(torch.uint8)
    x = x.permute(0, 2, 3, 1)
    if plan.out_channels != plan.channels:
        x = x.expand(n, plan.height, plan.width, plan.out_channels)
    out = torch.full(plan.out_shape, plan.pad_byte, dtype=torch.uint8, device=x.device)
    for k in range(n):
        top, left = plan.cell_origin(k)
        out[top:top + plan.height, left:left + plan.width] = x[k]
    plan.out = out
