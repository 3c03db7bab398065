"""CRC-32C: native (hardware and slicing-by-8) and pure-Python fallback against a
bit-by-bit oracle, the spec's check value and framing vector."""

import struct

import numpy as np
import pytest

from tbfast import _native, backends
from tbfast import crc32c as crc

NATIVE, WHY = _native.cpu()
needs_native = pytest.mark.skipif(NATIVE is None, reason=f"native module not built: {WHY}")


def naive_crc32c(data):
    """Bit-at-a-time CRC-32C straight from the definition (reflected 0x82F63B78)."""
    c = 0xFFFFFFFF
    for byte in bytes(data):
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def naive_mask(c):
    rotated = ((c >> 15) | (c << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) % 2**32


def _impls():
    out = [("python", crc.python_crc32c)]
    if NATIVE is not None:
        out.append(("native-software", lambda d, c=0: NATIVE.crc32c(d, c, 1)))
        if NATIVE.crc32c_hardware():
            out.append(("native-sse4.2", lambda d, c=0: NATIVE.crc32c(d, c, 2)))
    return out


IMPLS = _impls()
IDS = [name for name, _ in IMPLS]


@pytest.fixture(params=["auto", "reference"])
def mode(request, monkeypatch):
    """Runs a public-API test once with the default backend and once forced to fallback."""
    if request.param == "reference":
        monkeypatch.setenv("TBFAST_BACKEND", "reference")
    else:
        monkeypatch.delenv("TBFAST_BACKEND", raising=False)
    return request.param


@pytest.mark.parametrize("impl", [f for _, f in IMPLS], ids=IDS)
def test_check_value(impl):
    assert impl(b"123456789") == 0xE3069283


def test_oracle_check_value():
    assert naive_crc32c(b"123456789") == 0xE3069283


def test_public_api_check_value_and_empty(mode):
    assert crc.crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(b"") == 0
    assert crc.masked_crc32c(b"") == naive_mask(0) == 0xA282EAD8
    if mode == "reference" or NATIVE is None:
        assert crc.backend() == "python"
    else:
        assert crc.backend().startswith("native-")


def test_spec_framing_vector(mode):
    # Spec section 5: Event{wall_time=1700000000.0, file_version="brain.Event:2"}.
    data = bytes.fromhex("0900000040fc54d9411a0d627261696e2e4576656e743a32")
    length = struct.pack("<Q", len(data))
    framed = length + struct.pack("<I", crc.masked_crc32c(length)) + data + struct.pack("<I", crc.masked_crc32c(data))
    assert framed.hex() == "1800000000000000" "a37f4b22" + data.hex() + "eced8f9d"


@pytest.mark.parametrize("impl", [f for _, f in IMPLS], ids=IDS)
def test_random_odd_lengths_against_oracle(impl):
    rng = np.random.default_rng(1234)
    for n in [0, 1, 2, 3, 5, 7, 8, 9, 15, 17, 31, 63, 65, 127, 255, 257, 1023, 4099]:
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        assert impl(data) == naive_crc32c(data), n


@pytest.mark.parametrize("impl", [f for _, f in IMPLS], ids=IDS)
def test_every_alignment(impl):
    # The hardware path steps bytewise up to 8-byte alignment: cover all 8 offsets.
    rng = np.random.default_rng(7)
    base = bytearray(rng.integers(0, 256, size=200, dtype=np.uint8).tobytes())
    view = memoryview(base)
    for offset in range(8):
        for n in (0, 1, 7, 8, 13, 64, 191):
            chunk = view[offset : offset + n]
            assert impl(chunk) == naive_crc32c(chunk), (offset, n)


@pytest.mark.parametrize("impl", [f for _, f in IMPLS], ids=IDS)
def test_continuation(impl):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=1001, dtype=np.uint8).tobytes()
    whole = impl(data)
    for split in (0, 1, 500, 999, 1001):
        assert impl(data[split:], impl(data[:split])) == whole


@needs_native
def test_native_matches_fallback_large_random():
    rng = np.random.default_rng(99)
    for n in (1, 3, 1 << 10 | 5, (1 << 16) + 3, (1 << 20) + 11):  # crosses the GIL-release size
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        expect = crc.python_crc32c(data)
        assert NATIVE.crc32c(data, 0, 1) == expect
        assert NATIVE.crc32c(data) == expect
        assert NATIVE.masked_crc32c(data) == crc.mask(expect)


@needs_native
def test_native_accepts_buffers():
    arr = np.arange(37, dtype=np.int32)
    raw = arr.tobytes()
    assert NATIVE.crc32c(arr) == NATIVE.crc32c(raw) == naive_crc32c(raw)
    assert NATIVE.crc32c(bytearray(raw)) == NATIVE.crc32c(memoryview(raw)) == naive_crc32c(raw)
    with pytest.raises(TypeError):
        NATIVE.crc32c("not bytes")
    with pytest.raises(ValueError):
        NATIVE.crc32c(b"x", 2**32)
    with pytest.raises(ValueError):
        NATIVE.crc32c(b"x", 0, 3)


def test_mask_matches_naive_and_unmask_inverts():
    rng = np.random.default_rng(5)
    for c in [0, 1, 0xFFFFFFFF, 0x80000000, 0xE3069283, *rng.integers(0, 2**32, size=200).tolist()]:
        assert crc.mask(c) == naive_mask(c)
        assert crc.unmask(crc.mask(c)) == c


def test_masked_crc32c_random(mode):
    rng = np.random.default_rng(11)
    for n in (0, 1, 8, 9, 33, 1000):
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        assert crc.masked_crc32c(data) == naive_mask(naive_crc32c(data))
        assert crc.crc32c(data) == naive_crc32c(data)


def test_bad_crc_argument(mode):
    with pytest.raises(ValueError):
        crc.crc32c(b"x", -1)
    with pytest.raises(ValueError):
        crc.crc32c(b"x", 2**32)


def test_forced_native_without_module_raises(monkeypatch):
    monkeypatch.setenv("TBFAST_BACKEND", "native")
    monkeypatch.setitem(_native._cache, "_C", (None, "simulated: not built"))
    with pytest.raises(backends.BackendUnavailable, match="simulated"):
        crc.crc32c(b"x")


def test_missing_native_falls_back(monkeypatch):
    monkeypatch.delenv("TBFAST_BACKEND", raising=False)
    monkeypatch.setitem(_native._cache, "_C", (None, "simulated: not built"))
    assert crc.backend() == "python"
    assert crc.crc32c(b"123456789") == 0xE3069283
