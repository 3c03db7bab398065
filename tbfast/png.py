"""PNG encoding of uint8 images without PIL.

Two encoders, both starting with per-row PNG filtering (adaptive by default: the
libpng/Pillow heuristic):

* native (levels 0 and 1, the default): csrc/png.h. Rows are cut into units, each unit
  filtered and deflated on its own thread without the GIL: one Huffman block per unit
  (code built from the unit's own symbol counts) with runs against the previous byte,
  pixel and row as the only matches; level 0 writes stored blocks. On the benchmark
  grids this is within a few percent of Pillow's size (zlib level 6) at over ten times
  its speed; on flat images, where zlib's general matching wins, within about 1.5x of
  a few hundred bytes.
* zlib (levels 2-9, any explicit ``strategy``, or when the native module is missing):
  the standard library's deflate (which releases the GIL). Large images are deflated in
  one piece per thread, pigz-style: each piece is a raw deflate stream primed with the
  32 KiB before it (``zdict``) and ended on a byte boundary (``Z_SYNC_FLUSH``), so the
  pieces concatenate into one valid zlib stream; every piece goes into its own IDAT
  chunk with its CRC computed on its thread, and the Adler-32 of the whole is combined
  from the pieces' checksums.

Both write one zlib stream over one or more IDAT chunks, and their bytes do not depend
on the thread count (zlib's: except for piece boundaries, under 0.1% of the size).
"""

import concurrent.futures
import os
import struct
import threading
import zlib

import numpy as np

from . import _native, _tensor, backends

__all__ = ["encode_png", "png_filter", "DEFAULT_LEVEL", "DEFAULT_STRATEGY", "FILTERS", "NATIVE_LEVELS", "STRATEGIES"]

FILTERS = {"none": 0, "sub": 1, "up": 2, "average": 3, "paeth": 4, "adaptive": 5}
STRATEGIES = {"default": zlib.Z_DEFAULT_STRATEGY, "filtered": zlib.Z_FILTERED, "huffman": zlib.Z_HUFFMAN_ONLY,
              "rle": zlib.Z_RLE}
DEFAULT_LEVEL = 1
DEFAULT_STRATEGY = "rle"  # the zlib encoder's strategy when none is given
NATIVE_LEVELS = (0, 1)  # levels the native encoder implements (0: stored, 1: fast)
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MIN_PIECE = 1 << 17  # bytes of filtered data per deflate thread, at least
_WINDOW = 1 << 15

_pool = None  # deflate threads of the zlib encoder, made on first use
_pool_lock = threading.Lock()


def _executor(workers):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tbfast-png")
        return _pool


def _after_fork_in_child():
    # The parent's pool threads do not exist in a forked child: work submitted to the
    # copied pool would never run. The child makes its own pool (and lock) on first use.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _as_hwc(image):
    """uint8 HWC C-contiguous NumPy array from a HW/HWC tensor or array. A tensor is
    checked by tbfast's one validation place (:func:`tbfast._tensor.describe`: nested
    layouts, subclasses and functorch wrappers, a storage smaller than its sizes, strides
    and offset) before any copy reads it."""
    if _tensor.is_torch_tensor(image):
        image = _tensor.describe(image, "image", layout="strided").owner.detach()
        if image.dtype != _tensor._torch().uint8:
            raise TypeError(f"encode_png expects uint8 pixels, got {image.dtype}")
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


@_tensor.untraced
def png_filter(image, filter="adaptive", backend=None):
    """Filtered scanlines of a uint8 HWC image: ``(H, W*C + 1)`` uint8 array, each row a
    filter-type byte followed by the filtered bytes (PNG spec 9). ``filter``: one of
    FILTERS; 'adaptive' picks per row the type with the smallest sum of |int8|."""
    arr = _as_hwc(image)
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
    fn = _filter_native if _use_native(backend) else _filter_reference
    return fn(arr, FILTERS[filter])


def _use_native(backend):
    """PNG is a host codec, not an op of the backend registry (TBFAST_BACKEND does not
    apply): the native code when the module is loaded, else NumPy/zlib. ``backend``
    ('native' / 'reference') pins one for tests; a pinned native that cannot load raises."""
    if backend not in (None, "native", "reference"):
        raise ValueError(f"backend must be None, 'native' or 'reference', got {backend!r}")
    mod, why = _native.cpu()
    if backend == "native" and mod is None:
        raise backends.BackendUnavailable(f"the native PNG code cannot run: {why}")
    return backend != "reference" and mod is not None


def _filter_native(arr, code):
    mod, _ = _native.cpu()
    h, w, c = arr.shape
    out = np.empty((h, w * c + 1), np.uint8)
    mod.png_filter(data=arr.ctypes.data, height=h, row_bytes=w * c, in_row_stride=w * c, bpp=c, filter=code,
                   out=out.ctypes.data, num_threads=_native.num_threads())
    return out


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


@_tensor.untraced
def encode_png(image, level=None, strategy=None, filter="adaptive", num_threads=None, backend=None):
    """PNG bytes of a uint8 image.

    image: ``(H, W)`` or ``(H, W, C)`` uint8 tensor or array, C = 1 (grayscale),
    2 (gray + alpha), 3 (RGB) or 4 (RGBA); CUDA tensors are copied to the host.
    level: 0-9 (default DEFAULT_LEVEL): 0 stores, 1 is the fastest compression, 9 the
    smallest. Levels in NATIVE_LEVELS with no ``strategy`` run the native encoder (or, with
    ``backend='reference'`` or no native module, zlib at that level with DEFAULT_STRATEGY);
    other levels, or any ``strategy`` (one of STRATEGIES), run zlib. filter: one of
    FILTERS; num_threads: encoder threads (default: tbfast's CPU thread count).
    The bytes decode to exactly ``image``'s pixels.
    Raises TypeError for non-uint8 input, ValueError for other shapes or options
    (``backend='native'`` with a zlib-only level or strategy included); tensors are
    checked as every tbfast input is (TypeError for nested tensors, subclasses and
    functorch wrappers, ValueError for a storage smaller than the tensor addresses).
    """
    arr = _as_hwc(image)
    level = DEFAULT_LEVEL if level is None else int(level)
    if not 0 <= level <= 9:
        raise ValueError(f"level must be in 0..9, got {level}")
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
    threads = _native.num_threads() if num_threads is None else max(1, int(num_threads))
    h, w, c = arr.shape
    head = _SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0))
    tail = _chunk(b"IEND", b"")
    if strategy is None and level in NATIVE_LEVELS:
        fn = _encode_native if _use_native(backend) else _encode_zlib
        return fn(arr, level, FILTERS[filter], threads, head, tail)
    if backend == "native":
        raise ValueError(f"the native PNG encoder implements levels {NATIVE_LEVELS} with no zlib strategy; "
                         f"got level={level}, strategy={strategy!r}")
    return _encode_zlib(arr, level, FILTERS[filter], threads, head, tail, strategy)


def _encode_native(arr, level, code, threads, head, tail):
    mod, _ = _native.cpu()
    h, w, c = arr.shape
    return mod.png_encode(data=arr.ctypes.data, height=h, row_bytes=w * c, in_row_stride=w * c, bpp=c, filter=code,
                          level=level, head=head, tail=tail, num_threads=threads)


def _encode_zlib(arr, level, code, threads, head, tail, strategy=None):
    strategy = STRATEGIES[DEFAULT_STRATEGY if strategy is None else strategy]
    filter_fn = _filter_native if _use_native(None) else _filter_reference
    filtered = filter_fn(arr, code).reshape(-1)
    return b"".join([head, *_deflate(filtered, level, strategy, threads), tail])
