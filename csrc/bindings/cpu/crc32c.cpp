// Bindings for CRC-32C. Data crosses as any C-contiguous buffer (bytes, bytearray,
// memoryview, NumPy array), held for the call; large inputs run without the GIL.
#include "bindings/registry.h"
#include "crc32c.h"

namespace {

constexpr Py_ssize_t kReleaseGilBytes = 1 << 16;  // below this the GIL round trip costs more

// Parses (buffer, crc, impl); returns false with a Python error set on bad input.
bool crc_args(PyObject* args, PyObject* kw, Py_buffer* buf, unsigned long* crc, int* impl) {
  static const char* kwlist[] = {"data", "crc", "impl", nullptr};
  *crc = 0;
  *impl = tbfast::kCrcAuto;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|ki", (char**)kwlist, buf, crc, impl)) return false;
  const char* err = nullptr;
  if (*crc > 0xFFFFFFFFul) err = "crc32c: crc must be in [0, 2**32)";
  else if (*impl < tbfast::kCrcAuto || *impl > tbfast::kCrcHardware) err = "crc32c: impl must be 0, 1 or 2";
  else if (*impl == tbfast::kCrcHardware && !tbfast::crc32c_hardware_available())
    err = "crc32c: this CPU has no SSE4.2 crc32 instruction";
  if (err) {
    PyBuffer_Release(buf);
    PyErr_SetString(PyExc_ValueError, err);
    return false;
  }
  return true;
}

uint32_t run(const Py_buffer& buf, uint32_t crc, int impl) {
  auto p = static_cast<const uint8_t*>(buf.buf);
  auto n = static_cast<size_t>(buf.len);
  if (buf.len < kReleaseGilBytes) return tbfast::crc32c_extend(crc, p, n, impl);
  uint32_t out;
  Py_BEGIN_ALLOW_THREADS out = tbfast::crc32c_extend(crc, p, n, impl);
  Py_END_ALLOW_THREADS return out;
}

}  // namespace

// (data, crc=0, impl=0) -> CRC-32C of data, continuing from finished crc.
static PyObject* crc32c(PyObject*, PyObject* args, PyObject* kw) {
  Py_buffer buf;
  unsigned long crc;
  int impl;
  if (!crc_args(args, kw, &buf, &crc, &impl)) return nullptr;
  uint32_t out = run(buf, static_cast<uint32_t>(crc), impl);
  PyBuffer_Release(&buf);
  return PyLong_FromUnsignedLong(out);
}

// (data, crc=0, impl=0) -> masked CRC-32C (TFRecord framing).
static PyObject* masked_crc32c(PyObject*, PyObject* args, PyObject* kw) {
  Py_buffer buf;
  unsigned long crc;
  int impl;
  if (!crc_args(args, kw, &buf, &crc, &impl)) return nullptr;
  uint32_t out = tbfast::crc32c_mask(run(buf, static_cast<uint32_t>(crc), impl));
  PyBuffer_Release(&buf);
  return PyLong_FromUnsignedLong(out);
}

// () -> True when the SSE4.2 path is used by impl=0.
static PyObject* crc32c_hardware(PyObject*, PyObject*, PyObject*) {
  return PyBool_FromLong(tbfast::crc32c_hardware_available());
}

TBF_REGISTER("crc32c", crc32c, "(data, crc=0, impl=0) -> int; impl 0 auto, 1 software, 2 SSE4.2");
TBF_REGISTER("masked_crc32c", masked_crc32c, "(data, crc=0, impl=0) -> int; masked CRC-32C");
TBF_REGISTER("crc32c_hardware", crc32c_hardware, "() -> bool; SSE4.2 crc32 available");
