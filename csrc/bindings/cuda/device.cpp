// Bindings for the CUDA runtime probe (csrc/cuda/device_cuda.cu).
#include "bindings/registry.h"
#include "cuda/device_cuda.h"

static PyObject* device_count(PyObject*, PyObject*) {
  int count = 0;
  int err = tbfast::cuda_device_count(&count);
  return Py_BuildValue("(iis)", count, err, err ? tbfast::cuda_error_string(err) : "");
}

static PyObject* versions(PyObject*, PyObject*) {
  int rt = 0, drv = 0;
  tbfast::cuda_versions(&rt, &drv);
  return Py_BuildValue("(ii)", rt, drv);
}

static PyObject* probe(PyObject*, PyObject* args) {
  unsigned long long stream = 0;
  if (!PyArg_ParseTuple(args, "K", &stream)) return nullptr;
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
TBF_REGISTER("probe", probe, "(stream) -> 42 after a kernel launch round trip");
