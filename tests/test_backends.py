"""Backend selection, the `tbfast info` command, dtype codes and the build wiring."""

import os
import re
import subprocess
import sys

import pytest

import tbfast
from tbfast import _dtypes, _native, backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dtype_codes_match_csrc():
    text = open(os.path.join(ROOT, "csrc", "common.h")).read()
    enum = {name: int(v) for name, v in re.findall(r"\bk(\w+) = (\d+),", text)}
    for name, code in _dtypes.DTYPE_CODES.items():
        cname = {"bool": "Bool", "bfloat16": "BFloat16"}.get(name, name.capitalize().replace("int", "Int"))
        cname = cname.replace("Uint", "UInt").replace("Float", "Float")
        assert enum[cname] == code, name
    assert enum["NumDTypes"] == len(_dtypes.DTYPE_CODES)


def test_priority_order_and_reasons(monkeypatch):
    name, _ = backends.select("histogram", "cpu")
    assert name == "native"
    # an op without any CUDA implementation lists every backend with its reason
    monkeypatch.setitem(backends.OPS, "cpu_only_op", {("reference", "cpu"): "tbfast.histogram:_reference_impl"})
    with pytest.raises(backends.BackendUnavailable) as err:
        backends.select("cpu_only_op", "cuda")
    text = str(err.value)
    for b in backends.BACKENDS:
        assert f"  {b}:" in text


def test_forced_unavailable_backend_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(_native, "_cache", {"_C": (None, "tbfast._C not importable (simulated)")})
    with pytest.raises(backends.BackendUnavailable, match="simulated"):
        tbfast.histogram([1.0], backend="native")
    # unforced: falls through to the next backend and says which one ran
    assert tbfast.histogram([1.0, 2.0]).backend == "numba"


def test_info_command_lists_every_op_and_backend():
    out = subprocess.run([sys.executable, "-m", "tbfast", "info"], capture_output=True, text=True, check=True).stdout
    assert "native CPU module tbfast._C: loaded" in out
    assert re.search(r"histogram\s+cpu\s+native\s+yes", out)
    import torch

    if torch.cuda.is_available():
        assert re.search(r"histogram\s+cuda\s+reference\s+yes", out)
    else:
        assert re.search(r"histogram\s+cuda\s+reference\s+no\s+torch.cuda.is_available\(\) is False", out)
    console = os.path.join(os.path.dirname(sys.executable), "tbfast")
    assert subprocess.run([console, "info"], capture_output=True, text=True).stdout == out


def test_simd_level_is_reported_and_capped():
    # `tbfast info` names the SIMD level of the CPU kernels; TBFAST_SIMD caps it (the
    # bit-for-bit tests rely on the cap), TBFAST_DISABLE_SIMD=1 turns SIMD off
    order = ["off", "avx2", "avx512"]

    def level(**env):
        out = subprocess.run([sys.executable, "-m", "tbfast", "info"], capture_output=True, text=True, check=True,
                             env={**{k: v for k, v in os.environ.items() if not k.startswith("TBFAST_")}, **env}).stdout
        return re.search(r"CPU SIMD level: (\w+)", out).group(1)

    best = level()
    assert best in order
    assert level(TBFAST_SIMD="avx2") == order[min(order.index(best), 1)]
    assert level(TBFAST_SIMD="off") == "off" == level(TBFAST_DISABLE_SIMD="1")
    with pytest.raises(TypeError):
        _native.cpu()[0].cpu_simd_level(1)


def test_package_imports_without_native_module():
    code = ("import sys; sys.modules['tbfast._C'] = None; sys.modules['tbfast._C_cuda'] = None\n"
            "import tbfast, numpy as np\n"
            "r = tbfast.histogram(np.arange(10.0), bins=3)\n"
            "assert r.backend == 'numba', r.backend\n"
            "assert r.numpy()[0].tolist() == [3, 3, 4]\n"
            "from tbfast import crc32c; assert crc32c.crc32c(b'123456789') == 0xE3069283\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cuda_module_builds_and_loads_without_a_gpu():
    import shutil

    if shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        pytest.skip("nvcc not available: the CUDA module is not built here")
    mod, why = _native._load("_C_cuda")
    assert mod is not None, why
    count, err, msg = mod.device_count()
    runtime, _driver = mod.versions()
    assert runtime >= 12000
    if count == 0:
        assert err != 0 and msg  # a clear reason, no crash
        assert "no CUDA device" in _native.cuda()[1]
    else:
        import torch

        assert mod.probe(stream=torch.cuda.current_stream().cuda_stream) == 42


def test_build_never_imports_torch(tmp_path):
    # setup.py is evaluated with torch made unimportable.
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = ['setup.py', '--name']\n"
            f"runpy.run_path({os.path.join(ROOT, 'setup.py')!r}, run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "tbfast" in out.stdout


@pytest.mark.parametrize("mode", ["off", "auto", "on"])
def test_cuda_build_switch(monkeypatch, mode):
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("tbfast_setup", os.path.join(ROOT, "setup.py"))
    setup_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_mod)  # guarded: does not run setup()
    monkeypatch.setenv("TBFAST_CUDA", mode)
    monkeypatch.setenv("TBFAST_CUDA_ARCHS", "90")
    have_nvcc = setup_mod._find_nvcc() is not None
    if mode == "on" and not have_nvcc:
        with pytest.raises(SystemExit, match="nvcc"):
            setup_mod.extensions()
        return
    names = [e.name for e in setup_mod.extensions()]
    assert names[0] == "tbfast._C"
    assert ("tbfast._C_cuda" in names) == (mode != "off" and have_nvcc)
    if "tbfast._C_cuda" in names:
        cuda = [e for e in setup_mod.extensions() if e.name == "tbfast._C_cuda"][0]
        assert any(src.endswith(".cu") for src in cuda.sources)
        assert "cudart_static" in cuda.libraries
    monkeypatch.setenv("TBFAST_NATIVE", "off")
    assert setup_mod.extensions() == []
