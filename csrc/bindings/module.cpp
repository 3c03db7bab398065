// Module init shared by tbfast._C and tbfast._C_cuda (TBFAST_MODULE_NAME picks which):
// the registered functions, plus every registered constant as a module attribute.
#include "bindings/registry.h"

#define TBF_STR_(x) #x
#define TBF_STR(x) TBF_STR_(x)
#define TBF_INIT_NAME(n) TBF_CONCAT(PyInit_, n)

static struct PyModuleDef tbf_module = {PyModuleDef_HEAD_INIT, "tbfast." TBF_STR(TBFAST_MODULE_NAME),
                                        "tbfast native kernels", -1, nullptr};

// Status codes and dtype codes, shared by every module.
TBF_CONSTANT("STATUS_OK", tbfast::kOk);
TBF_CONSTANT("STATUS_BAD_DTYPE", tbfast::kBadDType);
TBF_CONSTANT("STATUS_BAD_MODE", tbfast::kBadMode);
TBF_CONSTANT("STATUS_BAD_ARGUMENT", tbfast::kBadArgument);
TBF_CONSTANT("STATUS_OUT_OF_MEMORY", tbfast::kOutOfMemory);
TBF_CONSTANT("STATUS_THREAD_ERROR", tbfast::kThreadError);
TBF_CONSTANT("STATUS_INTERNAL", tbfast::kInternal);
TBF_CONSTANT("STATUS_CUDA_ERROR", tbfast::kCudaError);
TBF_CONSTANT("NUM_DTYPES", tbfast::kNumDTypes);

PyMODINIT_FUNC TBF_INIT_NAME(TBFAST_MODULE_NAME)(void) {
  auto& methods = tbfast::method_registry();
  static std::vector<PyMethodDef> table;
  table = methods;
  table.push_back(PyMethodDef{nullptr, nullptr, 0, nullptr});
  tbf_module.m_methods = table.data();
  PyObject* m = PyModule_Create(&tbf_module);
  if (!m) return nullptr;
  for (auto& c : tbfast::constant_registry()) {
    if (PyModule_AddObject(m, c.first, PyLong_FromLongLong(c.second)) < 0) {
      Py_DECREF(m);
      return nullptr;
    }
  }
  return m;
}
