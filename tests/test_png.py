"""tbfast.png: filters against a byte-by-byte oracle, and encodings decoded by Pillow
(and zlib) to exactly the input pixels, for every filter, level, strategy and thread
count."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch

import oracle_image as oracle
from conftest import require_backend
from tbfast import png

PIL = pytest.importorskip("PIL.Image")

SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 4), (9, 13, 3), (17, 11, 1), (6, 5, 2), (33, 40, 4)]
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def images(shape, seed=0):
    """Random pixels with repeated rows and flat runs so every filter wins somewhere."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    h = shape[0]
    a[h // 3: h // 2] = a[h // 3]
    a[h // 2:, : shape[1] // 2] = 7
    ramp = np.arange(shape[1], dtype=np.uint8)[None, :, None]
    if h > 3:
        a[-2:] = ramp
    return a


def decode(data):
    im = PIL.open(io.BytesIO(data))
    arr = np.asarray(im)
    return im.mode, arr if arr.ndim == 3 else arr[:, :, None]


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(png.FILTERS))
def test_filter_matches_oracle(backend, shape, name):
    require_backend("png_filter", backend)
    a = images(shape, seed=len(name))
    got = png.png_filter(a, name, backend=backend)
    np.testing.assert_array_equal(got, oracle.png_filter(a, png.FILTERS[name]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(png.FILTERS))
def test_roundtrip_every_filter(shape, name):
    a = images(shape, seed=3)
    mode, px = decode(png.encode_png(a, filter=name))
    assert mode == MODES[shape[2]]
    np.testing.assert_array_equal(px, a)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("strategy", list(png.STRATEGIES))
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_roundtrip_levels_and_threads(level, strategy, threads):
    a = images((300, 257, 3), seed=level)  # ~230 KB of scanlines: split across threads
    data = png.encode_png(a, level=level, strategy=strategy, num_threads=threads)
    np.testing.assert_array_equal(decode(data)[1], a)


def _chunks(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body)
        out.append((kind, body))
        pos += 12 + n
    return out


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_stream_structure(threads):
    """One valid zlib stream over the IDAT chunks (checked by zlib itself), exact
    Adler-32, chunk CRCs, IHDR fields."""
    a = images((400, 300, 4), seed=9)
    chunks = _chunks(png.encode_png(a, num_threads=threads))
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (300, 400, 8, 6, 0, 0, 0)
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    d = zlib.decompressobj()
    raw = d.decompress(stream)
    assert d.eof and not d.unused_data
    np.testing.assert_array_equal(np.frombuffer(raw, np.uint8).reshape(400, -1), png.png_filter(a))


def test_adler32_combine():
    rng = np.random.default_rng(0)
    for n1, n2 in [(0, 5), (5, 0), (1, 1), (70000, 123457), (3, 65521 * 3 + 7)]:
        a, b = rng.bytes(n1), rng.bytes(n2)
        assert png.adler32_combine(zlib.adler32(a), zlib.adler32(b), n2) == zlib.adler32(a + b)


def test_inputs():
    a = images((4, 5, 3))
    np.testing.assert_array_equal(decode(png.encode_png(torch.from_numpy(a)))[1], a)
    gray = a[:, :, 0]
    mode, px = decode(png.encode_png(gray))
    assert mode == "L"
    np.testing.assert_array_equal(px[:, :, 0], gray)
    view = images((8, 10, 3))[::2, ::3]  # non-contiguous
    np.testing.assert_array_equal(decode(png.encode_png(view))[1], view)


@pytest.mark.parametrize("arg,kw,exc", [
    (np.zeros((2, 2, 3), np.float32), {}, TypeError),
    (np.zeros((2, 2, 5), np.uint8), {}, ValueError),
    (np.zeros((2, 2, 2, 2), np.uint8), {}, ValueError),
    (np.zeros((0, 2, 3), np.uint8), {}, ValueError),
    (np.zeros((2, 2, 3), np.uint8), dict(level=10), ValueError),
    (np.zeros((2, 2, 3), np.uint8), dict(strategy="fast"), ValueError),
    (np.zeros((2, 2, 3), np.uint8), dict(filter="best"), ValueError),
])
def test_errors(arg, kw, exc):
    with pytest.raises(exc):
        png.encode_png(arg, **kw)
