"""PNG encoding of uint8 images without PIL.

Steps: per-row PNG filtering (native C++ on all CPU threads, NumPy fallback), then zlib
deflate from the standard library (which releases the GIL). Large images are deflated in
one piece per thread, pigz-style: each piece is a raw deflate stream primed with the
32 KiB before it (``zdict``) and ended on a byte boundary (``Z_SYNC_FLUSH``), so the
pieces concatenate into one valid zlib stream; every piece goes into its own IDAT chunk
with its CRC computed on its thread, and the Adler-32 of the whole is combined from the
pieces' checksums. The result does not depend on the thread count except for the
piece boundaries (smaller than 0.1% size difference).

Defaults: adaptive row filters (the libpng/Pillow heuristic) and ``Z_RLE`` at level 1.
On photographic-like and synthetic test images this is within a few percent of Pillow's
size (Pillow: adaptive filters, zlib level 6) at a fraction of the time; pass ``level``
(0-9) and ``strategy`` to trade speed for size.
"""

import concurrent.futures
import struct
import threading
import zlib

import numpy as np

from . import _native, backends

__all__ = ["encode_png", "png_filter", "DEFAULT_LEVEL", "DEFAULT_STRATEGY", "FILTERS", "STRATEGIES"]

FILTERS = {"none": 0, "sub": 1, "up": 2, "average": 3, "paeth": 4, "adaptive": 5}
STRATEGIES = {"default": zlib.Z_DEFAULT_STRATEGY, "filtered": zlib.Z_FILTERED, "huffman": zlib.Z_HUFFMAN_ONLY,
              "rle": zlib.Z_RLE}
DEFAULT_LEVEL = 1
DEFAULT_STRATEGY = "rle"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MIN_PIECE = 1 << 17  # bytes of filtered data per deflate thread, at least
_WINDOW = 1 << 15

_pool = None
_pool_lock = threading.Lock()


def _executor(workers):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tbfast-png")
        return _pool


def _as_hwc(image):
    """uint8 HWC C-contiguous NumPy array from a HW/HWC tensor or array."""
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach()
        if image.device.type != "cpu":
            image = image.cpu()
        image = image.numpy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"encode_png expects uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPE:
        raise ValueError(f"encode_png expects an H x W or H x W x C image with C in 1..4, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"encode_png: empty image of shape {arr.shape}")
    if arr.shape[0] >= 2**31 or arr.shape[1] >= 2**31:
        raise ValueError(f"encode_png: image of shape {arr.shape} exceeds PNG's 2^31-1 limit")
    return np.ascontiguousarray(arr)


def png_filter(image, filter="adaptive", backend=None):
    """Filtered scanlines of a uint8 HWC image: ``(H, W*C + 1)`` uint8 array, each row a
    filter-type byte followed by the filtered bytes (PNG spec 9). ``filter``: one of
    FILTERS; 'adaptive' picks per row the type with the smallest sum of |int8|."""
    arr = _as_hwc(image)
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
    _, fn = backends.select("png_filter", "cpu", backend=backend)
    return fn(arr, FILTERS[filter])


@backends.implements("png_filter", "native", "cpu")
def _filter_native(arr, code):
    mod, _ = _native.cpu()
    h, w, c = arr.shape
    out = np.empty((h, w * c + 1), np.uint8)
    mod.png_filter(arr.ctypes.data, h, w * c, w * c, c, code, out.ctypes.data, _native.num_threads())
    return out


@backends.implements("png_filter", "reference", "cpu")
def _filter_reference(arr, code):
    h, w, c = arr.shape
    raw = arr.reshape(h, w * c).astype(np.int16)
    prior = np.vstack([np.zeros((1, w * c), np.int16), raw[:-1]])
    left = np.hstack([np.zeros((h, c), np.int16), raw[:, :-c]])
    upleft = np.hstack([np.zeros((h, c), np.int16), prior[:, :-c]])
    p = left + prior - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - prior), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upleft))
    cands = np.stack([raw, raw - left, raw - prior, raw - (left + prior) // 2, raw - paeth]).astype(np.uint8)
    if code == FILTERS["adaptive"]:
        signed = cands.astype(np.int8).astype(np.int64)
        sums = np.abs(signed).sum(axis=2)  # (5, h)
        choice = np.argmin(sums, axis=0)  # first minimum: lower filter types win ties
    else:
        choice = np.full(h, code)
    out = np.empty((h, w * c + 1), np.uint8)
    out[:, 0] = choice
    out[:, 1:] = cands[choice, np.arange(h)]
    return out


def _chunk(kind, data, crc=None):
    if crc is None:
        crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _zlib_header(level):
    flevel = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3
    cmf = 0x78
    flg = flevel << 6
    flg += 31 - ((cmf << 8) + flg) % 31
    return bytes((cmf, flg))


def adler32_combine(a1, a2, len2):
    """Adler-32 of A+B from adler(A), adler(B) and len(B) (zlib's adler32_combine)."""
    base = 65521
    rem = len2 % base
    s1 = a1 & 0xFFFF
    s2 = (rem * s1) % base
    s1 += (a2 & 0xFFFF) + base - 1
    s2 += ((a1 >> 16) & 0xFFFF) + ((a2 >> 16) & 0xFFFF) + base - rem
    if s1 >= base:
        s1 -= base
    if s1 >= base:
        s1 -= base
    if s2 >= base << 1:
        s2 -= base << 1
    if s2 >= base:
        s2 -= base
    return s1 | (s2 << 16)


def _deflate_piece(buf, start, stop, last, level, strategy, header):
    """One IDAT chunk with the raw deflate of buf[start:stop] (+ the zlib header for the
    first piece), and the piece's Adler-32."""
    view = buf[start:stop]
    zdict = bytes(buf[max(0, start - _WINDOW):start]) if start else None
    co = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy, zdict) if zdict else \
        zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    data = header + co.compress(view) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return _chunk(b"IDAT", data), zlib.adler32(view)


def _deflate(buf, level, strategy, threads):
    """IDAT chunks holding one zlib stream of ``buf`` (a 1-D uint8 array)."""
    n = buf.size
    pieces = max(1, min(threads, n // _MIN_PIECE))
    header = _zlib_header(level)
    if pieces == 1:
        co = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
        return [_chunk(b"IDAT", co.compress(buf) + co.flush())]
    bounds = [n * i // pieces for i in range(pieces + 1)]
    jobs = [(buf, bounds[i], bounds[i + 1], i == pieces - 1, level, strategy, header if i == 0 else b"")
            for i in range(pieces)]
    pool = _executor(pieces - 1)
    futures = [pool.submit(_deflate_piece, *job) for job in jobs[1:]]
    results = [_deflate_piece(*jobs[0])] + [f.result() for f in futures]
    adler = results[0][1]
    for i, (_, a) in enumerate(results[1:], 1):
        adler = adler32_combine(adler, a, bounds[i + 1] - bounds[i])
    return [r[0] for r in results] + [_chunk(b"IDAT", struct.pack(">I", adler))]


def encode_png(image, level=None, strategy=None, filter="adaptive", num_threads=None):
    """PNG bytes of a uint8 image.

    image: ``(H, W)`` or ``(H, W, C)`` uint8 tensor or array, C = 1 (grayscale),
    2 (gray + alpha), 3 (RGB) or 4 (RGBA); CUDA tensors are copied to the host.
    level: zlib level 0-9 (default DEFAULT_LEVEL); strategy: one of STRATEGIES (default
    DEFAULT_STRATEGY); filter: one of FILTERS; num_threads: deflate threads (default:
    tbfast's CPU thread count). The bytes decode to exactly ``image``'s pixels.
    Raises TypeError for non-uint8 input, ValueError for other shapes or options.
    """
    arr = _as_hwc(image)
    level = DEFAULT_LEVEL if level is None else int(level)
    if not 0 <= level <= 9:
        raise ValueError(f"level must be in 0..9, got {level}")
    strategy = DEFAULT_STRATEGY if strategy is None else strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    threads = _native.num_threads() if num_threads is None else max(1, int(num_threads))
    h, w, c = arr.shape
    filtered = png_filter(arr, filter).reshape(-1)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    parts = [_SIGNATURE, _chunk(b"IHDR", ihdr)]
    parts += _deflate(filtered, level, STRATEGIES[strategy], threads)
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)
