"""CRC-32C (Castagnoli) and the TFRecord masked CRC (spec section 5).

The native module (SSE4.2 or slicing-by-8 C++) runs by default. A pure-Python table
implementation runs when the native module is missing or ``TBFAST_BACKEND`` is
``numba`` or ``reference``; ``TBFAST_BACKEND=native`` without the native module raises
:class:`tbfast.backends.BackendUnavailable`.
"""

from . import _native, backends

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _make_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        table.append(c)
    return tuple(table)


_TABLE = _make_table()


def python_crc32c(data, crc=0):
    """Pure-Python CRC-32C of ``data`` (bytes-like), continuing from finished ``crc``."""
    table = _TABLE
    c = crc ^ _U32
    for b in memoryview(data).cast("B"):
        c = (c >> 8) ^ table[(c ^ b) & 0xFF]
    return c ^ _U32


def mask(crc):
    """TFRecord mask of a CRC: rotate right by 15 and add 0xA282EAD8, mod 2**32."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def unmask(masked):
    """Inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def _native_module():
    """The native module, or None when the fallback must run (see module docstring)."""
    want = backends.forced()
    mod, why = _native.cpu()
    if want == "native" and mod is None:
        raise backends.BackendUnavailable(f"backend 'native' cannot run crc32c on cpu: {why}")
    if want in ("numba", "reference"):
        return None
    return mod


def backend():
    """Name of the implementation :func:`crc32c` uses now: 'native-sse4.2',
    'native-slicing-by-8' or 'python'."""
    mod = _native_module()
    if mod is None:
        return "python"
    return "native-sse4.2" if mod.crc32c_hardware() else "native-slicing-by-8"


def _check_crc(crc):
    if not isinstance(crc, int) or not 0 <= crc <= _U32:
        raise ValueError(f"crc must be an int in [0, 2**32), got {crc!r}")


def crc32c(data, crc=0):
    """CRC-32C of ``data`` (bytes, bytearray, memoryview or any C-contiguous buffer).

    ``crc`` continues from an earlier result: ``crc32c(b, crc32c(a)) == crc32c(a + b)``.
    Returns an int in [0, 2**32). Raises TypeError for non-buffer data, ValueError for a
    bad ``crc``.
    """
    _check_crc(crc)
    mod = _native_module()
    if mod is None:
        return python_crc32c(data, crc)
    return mod.crc32c(data, crc)


def masked_crc32c(data):
    """Masked CRC-32C of ``data`` as stored in TFRecord framing; int in [0, 2**32)."""
    mod = _native_module()
    if mod is None:
        return mask(python_crc32c(data))
    return mod.masked_crc32c(data)
