"""Input normalisation, the one place where every op's inputs are checked: any torch
tensor, NumPy array, list or scalar becomes a :class:`Desc`, a strided descriptor
(pointer, dtype code, element count, sizes and strides in elements, device, device
index) that the kernels read.

No float64 copy is ever made, and no copy at all for dense input. Layouts:

* ``"flat"`` (order-free reductions: histograms): a tensor whose memory is a dense
  permutation of its shape (transposed, channels-last, a flipped NumPy view) is read in
  place as ``numel`` consecutive elements; only gappy views are compacted, in their own
  dtype.
* ``"rowmajor"`` (ops that pair elements of several inputs: PR curves): anything not
  C-contiguous is copied (same dtype, same device).
* ``"strided"`` (images): sizes and strides as they are, nothing copied; the owner is
  always a torch tensor.

Rejected with an error naming the problem, never passed to a kernel: unsupported dtypes,
sparse/quantized/nested layouts, meta tensors, tensor subclasses whose ``data_ptr()`` is
not their data (DTensor, fake and functional tensors, other ``__torch_dispatch__``
wrappers, functorch's vmap/grad wrappers), and tensors whose storage is smaller than their
sizes, strides and offset say. The storage is checked on the tensor as given, before
anything (a compacting copy, a flat view, a host copy) reads its memory.

Entry points that reach native code are marked with :func:`untraced`: torch.compile
runs them eagerly (a graph break) instead of tracing their NumPy/ctypes code.

The CUDA stream is not part of the descriptor: a job resolves it once per device
(:func:`tbfast._device.resolve_stream`).
"""

import functools
import sys

import numpy as np

from . import _dtypes


def _torch():
    return sys.modules.get("torch")


def untraced(fn):
    """Decorator for public entry points that hand memory to native code: under
    ``torch.compile`` they run eagerly (``torch.compiler.disable``: a graph break), never
    traced. Traced, Dynamo would run tbfast's NumPy code on its own stand-ins and the
    kernels would get pointers to freed temporaries.

    Nothing is imported for this: until ``torch._dynamo`` is imported (torch.compile
    imports it), nothing can be tracing, and ``fn`` is called directly. After that
    (however it was imported) the disabled function is made once and reused (a call costs well under a
    microsecond). Importing torch._dynamo here instead would cost about a second on the
    first call, possibly on the writer thread, where a fork during the import leaves the
    child blocked on the import lock."""
    state = {}

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        inner = state.get("fn")
        if inner is None:
            if "torch._dynamo" not in sys.modules:
                return fn(*args, **kwargs)
            inner = state["fn"] = sys.modules["torch"].compiler.disable(fn)
        return inner(*args, **kwargs)

    return entry


def check_arguments(args, kwargs, names):
    """Storage bounds of every plain dense torch tensor among a writer method's arguments
    (``names``: its parameter names), in list / tuple items and dict values too, naming
    the parameter; metadata only. Methods whose output torch's own packers make
    (add_tensor, add_audio, add_mesh, add_image_with_boxes, ...) would otherwise read past
    a truncated storage (a segfault, or garbage written). Subclasses (DTensor, ...) are
    left to the one validation place (:func:`describe`)."""
    if "torch" not in sys.modules:  # no torch imported: no torch tensor can be among them
        return
    for i, a in enumerate(args):
        _check_argument(a, names[i] if i < len(names) else f"argument {i}")
    for k, a in kwargs.items():
        _check_argument(a, k)


def _check_argument(a, name):
    if type(a) in (list, tuple):
        for i, x in enumerate(a):
            check_storage(x, f"{name}[{i}]")
    elif type(a) is dict:  # add_hparams, add_scalars
        for k, x in a.items():
            check_storage(x, f"{name}[{k!r}]")
    else:
        check_storage(a, name)


def check_storage(a, name):
    """ValueError naming ``name`` when ``a`` is a plain dense torch tensor whose storage
    is smaller than its sizes, strides and offset address; anything else passes (tensor
    subclasses are left to :func:`describe`). Metadata only: nothing reads the memory."""
    if type(a) in _plain_types() and a.layout == _torch().strided and not a.is_quantized and \
            a.device.type != "meta" and not a.is_nested and a.numel():
        _check_storage(a, name)


def is_torch_tensor(x):
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


class Desc:
    """A read-only strided view of an input's elements.

    ptr: int address of element 0; numel: element count; dtype: code (tbfast._dtypes);
    shape / strides: sizes and strides in elements (``(numel,)`` / ``(1,)`` for flat and
    row-major descriptors, whose ``numel`` elements lie consecutively from ``ptr``);
    device: 'cpu', 'cuda' or 'meta'; device_index: int or None; owner: the torch tensor
    or NumPy array that keeps the memory alive.
    """

    __slots__ = ("ptr", "numel", "dtype", "device", "device_index", "owner", "shape", "strides")

    def __init__(self, ptr, numel, dtype, device, device_index, owner, shape=None, strides=None):
        self.ptr, self.numel, self.dtype = ptr, numel, dtype
        self.device, self.device_index, self.owner = device, device_index, owner
        self.shape = (numel,) if shape is None else shape
        self.strides = (1,) if strides is None else strides

    @property
    def is_torch(self):
        return is_torch_tensor(self.owner)

    def flat_owner(self):
        """The owner as a detached 1-D tensor / array over the same memory (flat and
        row-major descriptors)."""
        if self.is_torch:
            t = self.owner.detach()
            return t.reshape(-1) if t.is_contiguous() else t.as_strided((self.numel,), (1,))
        return self.owner

    def numpy(self):
        """Flat NumPy view (CPU only). bfloat16 comes back as its raw uint16 bits."""
        if self.device != "cpu":
            raise ValueError(f"numpy() of a {self.device} input")
        if self.is_torch:
            t = self.flat_owner()
            if self.dtype == _dtypes.BFLOAT16:
                t = t.view(_torch().int16)
            return t.numpy().view(_dtypes.NUMPY_STORAGE[self.dtype])
        return self.owner.view(_dtypes.NUMPY_STORAGE[self.dtype])


# Kept for readers of older code: the flat descriptor used to be called Flat.
Flat = Desc


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


def describe(values, name="values", layout="flat", allow_meta=False):
    """Check ``values`` and describe its memory (see the module docstring for layouts).

    Raises TypeError for unsupported types, dtypes, layouts and tensor subclasses, and
    ValueError for meta tensors (unless ``allow_meta``: tests prove host-sync freedom
    with them) and for tensors whose storage does not hold their elements.
    """
    if is_torch_tensor(values):
        return _describe_torch(values, name, layout, allow_meta)
    arr = as_numpy(values, name)
    try:
        code = _dtypes.code_of(arr.dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if layout == "strided":
        import torch  # image input: the array is viewed as a tensor (torch may not be imported yet)

        if any(s < 0 for s in arr.strides):
            arr = np.ascontiguousarray(arr)
        return _describe_torch(torch.from_numpy(arr), name, layout, allow_meta)
    arr = np.ravel(arr, order="C" if layout == "rowmajor" else "K")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return Desc(arr.ctypes.data, arr.size, code, "cpu", None, arr)


_PLAIN = None


def _plain_types():
    global _PLAIN
    if _PLAIN is None:
        torch = _torch()
        _PLAIN = (torch.Tensor, torch.nn.Parameter)
    return _PLAIN


def check_tensor(t, name="values"):
    """For callers that look at a tensor's shape, or convert it, before describing it:
    TypeError naming the type for tensor subclasses and functorch wrappers whose
    data_ptr() is not their data, and naming the layout for nested tensors (whose .shape
    is a torch internal error); ValueError for a storage smaller than the sizes, strides
    and offset address (so no conversion reads past it). Anything that is not a torch
    tensor passes."""
    if is_torch_tensor(t):
        _check_plain(t, name)
        check_storage(t, name)


_FUNCTORCH = (("is_batchedtensor", "BatchedTensor", "torch.vmap"),
              ("is_legacy_batchedtensor", "BatchedTensor", "torch.vmap"),
              ("is_gradtrackingtensor", "GradTrackingTensor", "torch.func.grad / jacrev / vjp"),
              ("is_functionaltensor", "FunctionalTensor", "torch.func.functionalize"))


def _functorch_wrapper(t):
    """(name, transform) of a functorch wrapper tensor (vmap / grad / functionalize),
    whose type is plain torch.Tensor but which has no storage, else None."""
    ft = getattr(_torch()._C, "_functorch", None)
    is_wrapped = getattr(ft, "is_functorch_wrapped_tensor", None)
    if is_wrapped is None or not is_wrapped(t):
        return None
    for check, kind, transform in _FUNCTORCH:
        fn = getattr(ft, check, None)
        if fn is not None and fn(t):
            return kind, transform
    return "wrapper tensor", "a torch.func transform"


def _no_storage(t, name):
    """The TypeError for a plain-typed tensor without storage: functorch's wrappers."""
    kind, transform = _functorch_wrapper(t) or ("tensor without storage", "a torch.func transform")
    return TypeError(f"{name} is a functorch {kind} (inside {transform}), a wrapper with no storage that tbfast "
                     f"cannot read; log outside the transform, or the unwrapped tensor")


def _check_plain(t, name):
    """Reject wrappers whose data_ptr() is not their data, naming the type."""
    cls = type(t)
    if cls in _plain_types() and not t.is_nested:
        return  # functorch's wrappers are plain too: they have no storage (_no_storage, on first access)
    if t.is_nested:
        raise TypeError(f"{name} is a nested tensor (layout {t.layout}); tbfast takes dense tensors: pass "
                        f"each component, or .values() of a jagged tensor")
    torch = _torch()
    if getattr(cls, "__torch_dispatch__", None) is not torch.Tensor.__torch_dispatch__:
        full = f"{cls.__module__}.{cls.__qualname__}"
        hint = ""
        if cls.__name__ == "DTensor":
            hint = ("; for a sharded parameter pass group= to histograms()/add_histograms() (exact histogram of "
                    "the full tensor), or call .full_tensor() / .to_local() yourself")
        raise TypeError(f"{name} is a {cls.__name__} ({full}), a tensor subclass whose memory tbfast cannot read "
                        f"directly{hint}")


def _describe_torch(t, name, layout, allow_meta):
    torch = _torch()
    _check_plain(t, name)
    try:
        code = _dtypes.code_of(t.dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if t.layout != torch.strided or t.is_quantized:
        raise TypeError(f"{name}: unsupported tensor (dtype {t.dtype}, layout {t.layout}); tbfast reads dense "
                        f"(strided) tensors")
    dev = t.device
    if dev.type == "meta":
        if not allow_meta:
            raise ValueError(f"{name} is a meta tensor: it has no data to summarise")
    elif t.numel():
        _check_storage(t, name)  # the tensor as given: before any copy or view below reads its memory
        if dev.type != "cpu" and dev.type != "cuda":
            t, dev = t.cpu(), torch.device("cpu")  # other accelerators: computed on the host
    if t.is_neg() or t.is_conj():  # lazy views: the memory holds the unresolved values
        t = t.resolve_neg().resolve_conj()
    n = t.numel()
    if layout == "strided" or t.is_contiguous():
        pass
    elif layout == "flat" and _dense_order(t.shape, t.stride()):
        t = t.detach().as_strided((n,), (1,))
    else:
        t = t.detach().contiguous()
    index = dev.index if dev.type == "cuda" else None
    if dev.type == "meta":
        return Desc(0, n, code, "meta", None, t, tuple(t.shape), tuple(t.stride()))
    try:
        ptr = t.data_ptr()
    except RuntimeError:  # "Cannot access data pointer of Tensor that doesn't have storage"
        raise _no_storage(t, name) from None
    if n and ptr == 0:
        raise ValueError(f"{name}: the tensor's data pointer is null (its storage was freed or never allocated)")
    if layout == "strided":
        return Desc(ptr, n, code, dev.type, index, t, tuple(t.shape), tuple(t.stride()))
    return Desc(ptr, n, code, dev.type, index, t)


def _check_storage(t, name):
    """The storage must hold every element the sizes, strides and offset address. Reads
    only metadata (sizes, strides, offset, element size, the storage's byte count), so it
    runs on the tensor as given, before anything touches its memory."""
    try:
        nbytes = t.untyped_storage().nbytes()
    except (NotImplementedError, RuntimeError):  # "Cannot access storage of BatchedTensorImpl"
        raise _no_storage(t, name) from None
    offset = t.storage_offset()
    n = t.numel()
    if n and t.is_contiguous():  # the furthest element is numel - 1 past the offset (the common case, cheaper)
        need = (offset + n) * t.element_size()
        if need <= nbytes and offset >= 0:
            return
    sizes, strides = tuple(t.shape), tuple(t.stride())
    last = sum((s - 1) * st for s, st in zip(sizes, strides))
    need = (offset + last + 1) * t.element_size()
    if need > nbytes or offset < 0:
        raise ValueError(f"{name}: its storage ({nbytes} bytes) is smaller than its sizes {sizes}, strides {strides} "
                         f"and storage offset {offset} need ({need} bytes of {t.element_size()}-byte elements): "
                         f"a resized-away or truncated storage; refusing to read past it")
