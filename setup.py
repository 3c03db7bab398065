"""Build of tbfast's native modules. It never imports torch.

* ``tbfast._C``: the CPU kernels (csrc/cpu) and their bindings (csrc/bindings/cpu).
* ``tbfast._C_cuda``: the CUDA kernels (csrc/cuda/*.cu, compiled by nvcc) and their host
  bindings (csrc/bindings/cuda). CUDA runtime linked statically, so the module imports on
  machines with no GPU and no driver; it reports "no device" at run time instead.

Switches (environment variables):
* ``TBFAST_CUDA``: ``auto`` (default: build the CUDA module when nvcc is found),
  ``on`` (fail if nvcc is missing) or ``off``.
* ``TBFAST_CUDA_ARCHS``: semicolon list of SM versions, default ``80;90``. The newest one
  also gets PTX so that newer GPUs can JIT it.
* ``TBFAST_NATIVE``: ``on`` (default) or ``off`` (pure-Python install: Numba and the
  reference backends only).
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CXX_FLAGS = ["-std=c++17", "-O3", "-fvisibility=hidden", "-ffp-contract=off", "-Wall", "-Wno-psabi"]


def _env(name, default):
    return os.environ.get(name, default).strip().lower()


def _rel(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern), recursive=True))


def _headers():
    """Every header under csrc: an in-place build (setup.py build_ext --inplace) rebuilds a
    module when one of them is newer than it, not only when a source is."""
    return _rel("csrc/**/*.h")


def _find_nvcc():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        return os.path.join(cuda_home, "bin", "nvcc")
    return shutil.which("nvcc")


def _cuda_home(nvcc):
    # nvcc may be a wrapper script on PATH; ask it where it lives.
    out = subprocess.run([nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if "_HERE_=" in line:
            return os.path.dirname(os.path.normpath(line.split("_HERE_=", 1)[1].strip()))
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


class BuildExt(build_ext):
    """Compiles .cu sources with nvcc before the normal C++ link of the CUDA module."""

    def copy_file(self, infile, outfile, *args, **kwargs):
        # In-place builds replace modules by rename, never by rewriting the file: a process
        # that has the old module loaded keeps a valid mapping instead of crashing.
        if not outfile.endswith((".so", ".pyd")):
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = outfile + ".tmp"
        shutil.copyfile(infile, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, outfile)
        return outfile, 1

    def build_extension(self, ext):
        cu_sources = [s for s in ext.sources if s.endswith(".cu")]
        if cu_sources:
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            ext.extra_objects = self._nvcc_compile(ext, cu_sources)
        super().build_extension(ext)

    def _nvcc_compile(self, ext, sources):
        nvcc = ext.nvcc
        archs = [a.strip() for a in os.environ.get("TBFAST_CUDA_ARCHS", "80;90").split(";") if a.strip()]
        gencode = []
        for a in archs:
            gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
        gencode += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
        objects = []
        for src in sources:
            obj = os.path.join(self.build_temp, src.replace(os.sep, "_") + ".o")
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            cmd = [nvcc, "-c", src, "-o", obj, "-std=c++17", "-O3", "-Xcompiler", "-fPIC",
                   "-Xcompiler", "-fvisibility=hidden", "--fmad=false", "-Icsrc", *gencode]
            print(" ".join(cmd))
            subprocess.check_call(cmd, cwd=HERE)
            objects.append(obj)
        return objects


def extensions():
    if _env("TBFAST_NATIVE", "on") == "off":
        return []
    exts = [
        Extension(
            "tbfast._C",
            sources=_rel("csrc/bindings/module.cpp") + _rel("csrc/bindings/cpu/*.cpp") + _rel("csrc/cpu/*.cpp"),
            depends=_headers(),
            include_dirs=["csrc"],
            define_macros=[("TBFAST_MODULE_NAME", "_C")],
            extra_compile_args=CXX_FLAGS,
            extra_link_args=["-pthread"],
            language="c++",
        )
    ]
    mode = _env("TBFAST_CUDA", "auto")
    nvcc = _find_nvcc() if mode != "off" else None
    if mode == "on" and nvcc is None:
        sys.exit("TBFAST_CUDA=on but nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
    if nvcc is not None:
        home = _cuda_home(nvcc)
        libdirs = [d for d in (os.path.join(home, "lib64"), os.path.join(home, "lib")) if os.path.isdir(d)]
        ext = Extension(
            "tbfast._C_cuda",
            sources=_rel("csrc/bindings/module.cpp") + _rel("csrc/bindings/cuda/*.cpp") + _rel("csrc/cuda/*.cu"),
            depends=_headers(),
            include_dirs=["csrc", os.path.join(home, "include")],
            define_macros=[("TBFAST_MODULE_NAME", "_C_cuda"), ("TBFAST_WITH_CUDA", "1")],
            library_dirs=libdirs,
            libraries=["cudart_static", "dl", "rt"],
            extra_compile_args=CXX_FLAGS,
            extra_link_args=["-pthread"],
            language="c++",
        )
        ext.nvcc = nvcc
        exts.append(ext)
    return exts


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import extensions()
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
