// Bindings for the CUDA runtime probe (csrc/cuda/device_cuda.cu).
#include "bindings/registry.h"
#include "cuda/device_cuda.h"

static PyObject* device_count(PyObject*, PyObject*, PyObject*) {
  int count = 0;
  int err = tbfast::cuda_device_count(&count);
  return Py_BuildValue("(iis)", count, err, err ? tbfast::cuda_error_string(err) : "");
}

static PyObject* versions(PyObject*, PyObject*, PyObject*) {
  int rt = 0, drv = 0;
  tbfast::cuda_versions(&rt, &drv);
  return Py_BuildValue("(ii)", rt, drv);
}

static PyObject* last_cuda_error(PyObject*, PyObject*, PyObject*) {
  return PyUnicode_FromString(tbfast::cuda_last_error_message());
}

static PyObject* probe(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"stream", nullptr};
  unsigned long long stream = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "K", (char**)kwlist, &stream)) return nullptr;
  int result = 0, err = 0;
  Py_BEGIN_ALLOW_THREADS err = tbfast::cuda_probe(tbf_ptr<void>(stream), &result);
  Py_END_ALLOW_THREADS if (err) {
    PyErr_Format(PyExc_RuntimeError, "CUDA probe failed: %s", tbfast::cuda_error_string(err));
    return nullptr;
  }
  return PyLong_FromLong(result);
}

TBF_REGISTER("device_count", device_count, "() -> (count, error_code, error_string)");
TBF_REGISTER("versions", versions, "() -> (runtime_version, driver_version)");
TBF_REGISTER("last_cuda_error", last_cuda_error, "() -> message of the last CUDA error a kernel entry point returned");
TBF_REGISTER("probe", probe, "(stream) -> 42 after a kernel launch round trip");
