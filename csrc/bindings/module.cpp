// Module init shared by tbfast._C and tbfast._C_cuda (TBFAST_MODULE_NAME picks which).
#include "bindings/registry.h"

#define TBF_STR_(x) #x
#define TBF_STR(x) TBF_STR_(x)
#define TBF_INIT_NAME(n) TBF_CONCAT(PyInit_, n)

static struct PyModuleDef tbf_module = {PyModuleDef_HEAD_INIT, "tbfast." TBF_STR(TBFAST_MODULE_NAME),
                                        "tbfast native kernels", -1, nullptr};

PyMODINIT_FUNC TBF_INIT_NAME(TBFAST_MODULE_NAME)(void) {
  auto& methods = tbfast::method_registry();
  static std::vector<PyMethodDef> table;
  table = methods;
  table.push_back(PyMethodDef{nullptr, nullptr, 0, nullptr});
  tbf_module.m_methods = table.data();
  return PyModule_Create(&tbf_module);
}
