// Binding registry: each csrc/bindings/{cpu,cuda}/<op>.cpp registers its functions (and
// the constants Python needs: enums, struct sizes) with TBF_REGISTER / TBF_CONSTANT at
// static-init time, and module.cpp builds the module from them, so adding an op never
// edits a central list. Arguments cross as keyword arguments holding plain Python ints
// (pointers, sizes, dtype codes, stream handles): a swapped or missing argument is a
// TypeError, never a wrong pointer. Bindings never see torch or NumPy.
//
// Every entry point does the same steps in the same order: parse keywords, check the
// params struct (tbf_check), run the kernel without the GIL through tbf_run (which turns
// any C++ exception into a Status), and raise the Status as a Python exception (tbf_raise).
#pragma once
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <new>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common.h"

namespace tbfast {

inline std::vector<PyMethodDef>& method_registry() {
  static std::vector<PyMethodDef> methods;
  return methods;
}

inline std::vector<std::pair<const char*, long long>>& constant_registry() {
  static std::vector<std::pair<const char*, long long>> constants;
  return constants;
}

struct Registrar {
  Registrar(const char* name, PyCFunctionWithKeywords fn, const char* doc) {
    method_registry().push_back(PyMethodDef{name, (PyCFunction)(void (*)(void))fn, METH_VARARGS | METH_KEYWORDS, doc});
  }
  Registrar(const char* name, long long value) { constant_registry().emplace_back(name, value); }
};

// Runs fn() (returning a Status) with the GIL released; C++ exceptions become Statuses
// instead of terminating the interpreter.
template <typename F>
int tbf_run(F&& fn) {
  int status = kOk;
  Py_BEGIN_ALLOW_THREADS
  try {
    status = fn();
  } catch (const std::bad_alloc&) {
    status = kOutOfMemory;
  } catch (const std::system_error&) {
    status = kThreadError;
  } catch (...) {
    status = kInternal;
  }
  Py_END_ALLOW_THREADS
  return status;
}

// Raises the Python exception for a non-zero Status and returns nullptr; `detail` is
// appended (e.g. a CUDA error string).
inline PyObject* tbf_raise(int status, const char* op, const char* detail = nullptr) {
  PyObject* type = PyExc_RuntimeError;
  const char* what = "internal error";
  switch (status) {
    case kBadDType: type = PyExc_ValueError; what = "invalid dtype code"; break;
    case kBadMode: type = PyExc_ValueError; what = "invalid mode"; break;
    case kBadArgument: type = PyExc_ValueError; what = "invalid argument"; break;
    case kOutOfMemory: type = PyExc_MemoryError; what = "out of memory for native scratch"; break;
    case kThreadError: what = "could not start worker threads"; break;
    case kCudaError: what = "CUDA error"; break;
    default: break;
  }
  if (detail && *detail)
    PyErr_Format(type, "tbfast.%s: %s (status %d): %s", op, what, status, detail);
  else
    PyErr_Format(type, "tbfast.%s: %s (status %d)", op, what, status);
  return nullptr;
}

// A failed check before any kernel runs: ValueError naming the argument.
inline PyObject* tbf_bad(const char* op, const char* message) {
  PyErr_Format(PyExc_ValueError, "tbfast.%s: %s (status %d)", op, message, (int)kBadArgument);
  return nullptr;
}

}  // namespace tbfast

#define TBF_CONCAT_(a, b) a##b
#define TBF_CONCAT(a, b) TBF_CONCAT_(a, b)
#define TBF_REGISTER(name, fn, doc) \
  static ::tbfast::Registrar TBF_CONCAT(tbf_registrar_, __LINE__)(name, fn, doc)
#define TBF_CONSTANT(name, value) \
  static ::tbfast::Registrar TBF_CONCAT(tbf_constant_, __LINE__)(name, (long long)(value))

// Pointer arguments are passed as Python ints ("K" = unsigned long long).
template <typename T>
inline T* tbf_ptr(unsigned long long v) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(v));
}
