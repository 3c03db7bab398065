// Binding: the SIMD level the CPU kernels use in this process (csrc/cpu/simd.h), for
// `tbfast info` and the benchmark's machine record.
#include "bindings/registry.h"
#include "cpu/simd.h"

static PyObject* cpu_simd_level(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kw, "", (char**)kwlist)) return nullptr;  // no arguments
  static const char* names[] = {"off", "avx2", "avx512"};
  return PyUnicode_FromString(names[tbfast::simd_level()]);
}

TBF_REGISTER("cpu_simd_level", cpu_simd_level, "() -> 'off' | 'avx2' | 'avx512': the SIMD level of the CPU kernels");
