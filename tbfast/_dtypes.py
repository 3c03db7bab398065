"""Dtype codes shared with the native kernels (csrc/common.h, enum DType)."""

import numpy as np

BOOL, UINT8, INT8, INT16, INT32, INT64 = 0, 1, 2, 3, 4, 5
FLOAT16, BFLOAT16, FLOAT32, FLOAT64 = 6, 7, 8, 9
UINT16, UINT32, UINT64 = 10, 11, 12

DTYPE_CODES = {
    "bool": BOOL, "uint8": UINT8, "int8": INT8, "int16": INT16, "int32": INT32, "int64": INT64,
    "float16": FLOAT16, "bfloat16": BFLOAT16, "float32": FLOAT32, "float64": FLOAT64,
    "uint16": UINT16, "uint32": UINT32, "uint64": UINT64,
}
CODE_NAMES = {v: k for k, v in DTYPE_CODES.items()}
ITEMSIZE = {BOOL: 1, UINT8: 1, INT8: 1, INT16: 2, INT32: 4, INT64: 8, FLOAT16: 2, BFLOAT16: 2,
            FLOAT32: 4, FLOAT64: 8, UINT16: 2, UINT32: 4, UINT64: 8}
FLOATING = {FLOAT16, BFLOAT16, FLOAT32, FLOAT64}

# NumPy dtype used to view raw memory of each code (16-bit floats as raw uint16 bits for
# bfloat16, which NumPy does not have).
NUMPY_STORAGE = {
    BOOL: np.bool_, UINT8: np.uint8, INT8: np.int8, INT16: np.int16, INT32: np.int32,
    INT64: np.int64, FLOAT16: np.float16, BFLOAT16: np.uint16, FLOAT32: np.float32,
    FLOAT64: np.float64, UINT16: np.uint16, UINT32: np.uint32, UINT64: np.uint64,
}


_cache = {}


def code_of(dtype):
    """Dtype code of a torch or NumPy dtype; TypeError for anything unsupported."""
    code = _cache.get(dtype)
    if code is None:
        code = _cache[dtype] = _code_of(dtype)
    return code


def _code_of(dtype):
    name = str(dtype)
    if name.startswith("torch."):
        name = name[len("torch."):]
    if name == "bool_":
        name = "bool"
    code = DTYPE_CODES.get(name)
    if code is None:
        raise TypeError(
            f"unsupported dtype {dtype}: tbfast takes bool, integer, float16, bfloat16, "
            f"float32 and float64 tensors"
        )
    return code
