// Binding registry: each csrc/bindings/{cpu,cuda}/<op>.cpp registers its functions with
// TBF_REGISTER at static-init time, and module.cpp builds the method table from them, so
// adding an op never edits a central list. Arguments cross as plain Python ints
// (pointers, sizes, dtype codes, stream handles); bindings never see torch or NumPy.
#pragma once
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <vector>

namespace tbfast {

inline std::vector<PyMethodDef>& method_registry() {
  static std::vector<PyMethodDef> methods;
  return methods;
}

struct Registrar {
  Registrar(const char* name, PyCFunction fn, const char* doc) {
    method_registry().push_back(PyMethodDef{name, fn, METH_VARARGS, doc});
  }
};

}  // namespace tbfast

#define TBF_CONCAT_(a, b) a##b
#define TBF_CONCAT(a, b) TBF_CONCAT_(a, b)
#define TBF_REGISTER(name, fn, doc) \
  static ::tbfast::Registrar TBF_CONCAT(tbf_registrar_, __LINE__)(name, (PyCFunction)(fn), doc)

// Pointer arguments are passed as Python ints ("K" = unsigned long long).
template <typename T>
inline T* tbf_ptr(unsigned long long v) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(v));
}
