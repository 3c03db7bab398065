"""Input normalisation: any torch tensor, NumPy array, list or scalar becomes a
:class:`Flat`, a raw pointer + element count + dtype code + device that the kernels read.

No float64 copy is ever made, and no copy at all for contiguous input. A tensor whose
memory is a dense permutation of its shape (transposed, channels-last, a flipped NumPy
view) is also read in place: order-free reductions (histograms) do not care about element
order. Only truly gappy views (slices with steps) are compacted, in their own dtype.
"""

import sys

import numpy as np

from . import _dtypes


def _torch():
    return sys.modules.get("torch")


def is_torch_tensor(x):
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


class Flat:
    """A read-only flat view of an input's elements.

    ptr: int address of element 0; numel: element count; dtype: code (tbfast._dtypes);
    device: 'cpu' or 'cuda'; device_index: int or None; owner: the object that keeps the
    memory alive (torch tensor or NumPy array; its memory holds the ``numel`` elements
    contiguously from ``ptr``). :meth:`flat_owner` gives it as a 1-D detached view.
    """

    __slots__ = ("ptr", "numel", "dtype", "device", "device_index", "owner")

    def __init__(self, ptr, numel, dtype, device, device_index, owner):
        self.ptr, self.numel, self.dtype = ptr, numel, dtype
        self.device, self.device_index, self.owner = device, device_index, owner

    @property
    def is_torch(self):
        return is_torch_tensor(self.owner)

    def flat_owner(self):
        """The owner as a detached 1-D tensor / array over the same memory."""
        if self.is_torch:
            t = self.owner.detach()
            return t.reshape(-1) if t.is_contiguous() else t.as_strided((self.numel,), (1,))
        return self.owner

    def numpy(self):
        """Flat NumPy view (CPU only). bfloat16 comes back as its raw uint16 bits."""
        if self.device != "cpu":
            raise ValueError("numpy() of a CUDA input")
        if self.is_torch:
            t = self.flat_owner()
            if self.dtype == _dtypes.BFLOAT16:
                t = t.view(_torch().int16)
            return t.numpy().view(_dtypes.NUMPY_STORAGE[self.dtype])
        return self.owner.view(_dtypes.NUMPY_STORAGE[self.dtype])


def as_numpy(values, name="values"):
    """A NumPy array of a non-tensor input (array, sequence or number), without copying
    arrays. TypeError for strings, None and anything that is not numeric."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a tensor, array, sequence or number, got {type(values).__name__}")
    arr = np.asarray(values)
    if arr.dtype == object:
        raise TypeError(f"{name} could not be converted to a numeric array")
    return arr


def _dense_order(shape, strides):
    """True when (shape, strides) with non-negative strides covers exactly prod(shape)
    consecutive elements starting at the lowest address (a permutation of a dense
    layout)."""
    expected = 1
    for size, stride in sorted((p for p in zip(shape, strides) if p[0] != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def flat(values, name="values", order_matters=False):
    """Normalise ``values`` to a :class:`Flat`.

    ``order_matters=True`` (ops that pair elements of several inputs, or lay out images)
    requires row-major order, so anything not C-contiguous is copied (same dtype).
    Raises TypeError for unsupported types and dtypes.
    """
    if is_torch_tensor(values):
        return _flat_torch(values, name, order_matters)
    arr = as_numpy(values, name)
    try:
        code = _dtypes.code_of(arr.dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    arr = np.ravel(arr, order="C" if order_matters else "K")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return Flat(arr.ctypes.data, arr.size, code, "cpu", None, arr)


def _flat_torch(t, name, order_matters):
    torch = _torch()
    try:
        code = _dtypes.code_of(t.dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if t.layout != torch.strided or t.is_quantized:
        raise TypeError(f"{name}: unsupported tensor (dtype {t.dtype}, layout {t.layout})")
    dev = t.device
    if dev.type not in ("cpu", "cuda"):
        if dev.type == "meta":
            raise ValueError(f"{name} is a meta tensor: it has no data to summarise")
        t, dev = t.cpu(), torch.device("cpu")  # other accelerators: computed on the host
    if t.is_neg():  # a lazily negated view: its memory holds the un-negated values
        t = t.resolve_neg()
    n = t.numel()
    if t.is_contiguous():  # the common case: read in place, flat view made only if asked
        pass
    elif not order_matters and _dense_order(t.shape, t.stride()):
        t = t.detach().as_strided((n,), (1,))
    else:
        t = t.detach().contiguous()
    return Flat(t.data_ptr(), n, code, dev.type, dev.index if dev.type == "cuda" else None, t)
