"""Naive references for image grids, written from the spec (sections 1.6 and 2), not from
tbfast's code: torchvision's make_grid step by step in torch ops, torch's
``image()`` conversion in NumPy, and a pixel-by-pixel PNG filter."""

import math

import numpy as np
import torch


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0):
    """torchvision.utils.make_grid as spec section 2 describes it (in-place float ops in
    the tensor's own dtype)."""
    if isinstance(tensor, list):
        tensor = torch.stack(tensor, dim=0)
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        if tensor.size(0) == 1:
            tensor = torch.cat((tensor, tensor, tensor), 0)
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 4 and tensor.size(1) == 1:
        tensor = torch.cat((tensor, tensor, tensor), 1)
    if normalize:
        tensor = tensor.clone()

        def norm_ip(img, low, high):
            img.clamp_(min=low, max=high)
            img.sub_(low).div_(max(high - low, 1e-5))

        def norm_range(t, value_range):
            if value_range is not None:
                norm_ip(t, value_range[0], value_range[1])
            else:
                norm_ip(t, float(t.min()), float(t.max()))

        if scale_each:
            for t in tensor:
                norm_range(t, value_range)
        else:
            norm_range(tensor, value_range)
    if tensor.size(0) == 1:
        return tensor.squeeze(0)
    nmaps = tensor.size(0)
    xmaps = min(nrow, nmaps)
    ymaps = int(math.ceil(float(nmaps) / xmaps))
    height, width = int(tensor.size(2) + padding), int(tensor.size(3) + padding)
    num_channels = tensor.size(1)
    grid = tensor.new_full((num_channels, height * ymaps + padding, width * xmaps + padding), pad_value)
    k = 0
    for y in range(ymaps):
        for x in range(xmaps):
            if k >= nmaps:
                break
            grid.narrow(1, y * height + padding, height - padding).narrow(2, x * width + padding, width - padding).copy_(
                tensor[k])
            k = k + 1
    return grid


def torch_convert(hwc):
    """torch's image(): astype(float32) * (1 if uint8 else 255), clip, astype(uint8)."""
    if isinstance(hwc, torch.Tensor):
        if hwc.dtype == torch.bfloat16:
            hwc = hwc.to(torch.float16)  # make_np
        hwc = hwc.numpy()
    scale = 1 if hwc.dtype == np.uint8 else 255
    with np.errstate(invalid="ignore"):
        return (hwc.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)


def to_nchw(x, dataformats):
    """Input laid out as ``dataformats`` -> NCHW torch tensor (list input: stacked)."""
    fmt = dataformats.upper()
    if isinstance(x, (list, tuple)):
        item = fmt.replace("N", "")
        return torch.stack([to_nchw(torch.as_tensor(t), item)[0] for t in x])
    x = torch.as_tensor(x)
    if len(fmt) == 4:
        return x.permute([fmt.index(c) for c in "NCHW"])
    if len(fmt) == 3:
        return x.permute([fmt.index(c) for c in "CHW"]).unsqueeze(0)
    return x.permute([fmt.index(c) for c in "HW"]).unsqueeze(0).unsqueeze(0)


def expected_grid(images, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0,
                  dataformats="NCHW"):
    """tbfast.image_grid's documented result: make_grid then torch's conversion; 16-bit
    floats (and integers) normalised in float32; 1 channel kept as 1."""
    x = to_nchw(images, dataformats)
    channels = x.shape[1]
    if normalize and x.dtype != torch.float64:
        x = x.float()
    g = make_grid(x, nrow, padding, normalize, value_range, scale_each, pad_value)
    out = torch_convert(g.permute(1, 2, 0).contiguous())
    return out[:, :, :1] if channels == 1 else out


def png_filter_row(raw, prior, bpp, ftype):
    """One filtered row (PNG spec 9.2), byte by byte."""
    out = bytearray(len(raw))
    for i in range(len(raw)):
        a = raw[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        if ftype == 0:
            pred = 0
        elif ftype == 1:
            pred = a
        elif ftype == 2:
            pred = b
        elif ftype == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (raw[i] - pred) % 256
    return bytes(out)


def png_filter(hwc, ftype):
    """Filtered scanlines (filter byte + row) of a uint8 HWC array; ftype 0-4, or 5 for
    the per-row minimum sum of |int8| (first minimum wins)."""
    h, w, c = hwc.shape
    rows = []
    prior = bytes(w * c)
    for y in range(h):
        raw = hwc[y].tobytes()
        if ftype == 5:
            cands = [png_filter_row(raw, prior, c, f) for f in range(5)]
            sums = [sum(v if v < 128 else 256 - v for v in cand) for cand in cands]
            best = sums.index(min(sums))
            rows.append(bytes([best]) + cands[best])
        else:
            rows.append(bytes([ftype]) + png_filter_row(raw, prior, c, ftype))
        prior = raw
    return np.frombuffer(b"".join(rows), np.uint8).reshape(h, w * c + 1)
