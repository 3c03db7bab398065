#!/usr/bin/env python3
"""Rewrite a CUDA source file (csrc/cuda/*.cu) into C++ that runs on cuda_sim.h.

    python convert.py SRC.cu OUT.cpp [--name DISPLAY_PATH]

What is rewritten (everything else is left as it is, line numbers included: the output starts
with ``#line 1 "SRC"`` and every replacement keeps the newlines of the text it replaces, so
compiler, sanitizer and emulator messages point at the original file):

* ``#include <cuda_runtime.h>`` (and cuda_fp16.h, cuda_bf16.h, cuda.h, cuda_runtime_api.h,
  device_launch_parameters.h) -> ``#include "cuda_sim.h"``;
* every ``__global__`` kernel definition gets, as the first statement of its body, a
  registration of its name, its static shared memory (the sum of its ``__shared__``
  declarations) and its ``__launch_bounds__`` maximum, instantiated with the kernel;
* ``extern __shared__ [__align__(N)] T name[];`` -> the block's dynamic shared memory;
* ``__shared__ T a[..], b[..];`` (inside a kernel body) -> references to per-block allocations;
* ``kernel<<<grid, block[, smem[, stream]]>>>(args);`` -> ``::sim::launch(kernel, grid, block,
  smem, stream, args);``.

Anything this does not understand is an error (exit status 2, with file:line): a launch it
cannot take apart, a ``__shared__`` declaration of another form or outside a kernel body,
``__constant__`` / ``__managed__`` / ``__device__`` variables, inline PTX, textures, cooperative
groups, CUDA library headers, ``__activemask``, the launch APIs, and ``__CUDA_ARCH__`` inside
functions (device-only code paths would silently not be emulated).
"""

import argparse
import os
import re
import sys

CUDA_RUNTIME_HEADERS = {
    "cuda_runtime.h",
    "cuda_runtime_api.h",
    "cuda_fp16.h",
    "cuda_bf16.h",
    "cuda.h",
    "device_launch_parameters.h",
}
UNSUPPORTED_HEADER_PREFIXES = ("cub/", "thrust/", "cooperative_groups", "cuda/", "cuda_", "mma.h", "curand",
                               "cublas", "cufft", "cusparse", "nvToolsExt", "nvtx", "sm_", "crt/")
FORBIDDEN = [
    (r"\basm\b\s*(?:volatile\s*)?\(|\b__asm__\b", "inline assembly (PTX)"),
    (r"\b__constant__\b", "__constant__ memory"),
    (r"\b__managed__\b", "__managed__ memory"),
    (r"\btexture\s*<|\bsurface\s*<|\bcudaTextureObject_t\b|\bcudaSurfaceObject_t\b", "textures / surfaces"),
    (r"\bcooperative_groups\b", "cooperative groups"),
    (r"\b__activemask\b", "__activemask (depends on hardware convergence)"),
    (r"\bcudaLaunch(?:Cooperative)?Kernel\w*\b", "launch through the runtime API"),
    (r"\bcudaMemcpy(?:To|From)Symbol\w*\b|\bcudaGetSymbol\w*\b", "symbols (device variables)"),
    (r"\bcudaGraph\w*\b|\bcudaStreamBeginCapture\b", "CUDA graphs"),
]


class ConvertError(Exception):
    pass


# ---- lexing ------------------------------------------------------------------------------------


def lex_masks(src):
    """Two copies of src with the same length and newlines: `nocomment` (comments blanked) and
    `masked` (comments and the contents of string / character literals blanked)."""
    n = len(src)
    nocomment = list(src)
    masked = list(src)
    i = 0

    def blank(buf, a, b):
        for k in range(a, b):
            if buf[k] != "\n":
                buf[k] = " "

    while i < n:
        c = src[i]
        if c == "/" and i + 1 < n and src[i + 1] == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(nocomment, i, j)
            blank(masked, i, j)
            i = j
        elif c == "/" and i + 1 < n and src[i + 1] == "*":
            j = src.find("*/", i + 2)
            if j < 0:
                raise ConvertError(f"line {src.count(chr(10), 0, i) + 1}: unterminated comment")
            blank(nocomment, i, j + 2)
            blank(masked, i, j + 2)
            i = j + 2
        elif c == '"' or (c == "R" and i + 1 < n and src[i + 1] == '"'
                          and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_"))):
            if c == "R":
                m = re.match(r'R"([^()\\ ]{0,16})\(', src[i:])
                if not m:
                    raise ConvertError(f"line {src.count(chr(10), 0, i) + 1}: raw string literal not understood")
                end = src.find(")" + m.group(1) + '"', i)
                if end < 0:
                    raise ConvertError(f"line {src.count(chr(10), 0, i) + 1}: unterminated raw string")
                j = end + len(m.group(1)) + 2
                blank(masked, i + 2, j - 1)
                i = j
                continue
            j = i + 1
            while j < n and src[j] != '"':
                if src[j] == "\\":
                    j += 1
                elif src[j] == "\n":
                    raise ConvertError(f"line {src.count(chr(10), 0, i) + 1}: unterminated string literal")
                j += 1
            blank(masked, i + 1, j)
            i = j + 1
        elif c == "'":
            # digit separator (1'000) or a character literal
            k = i - 1
            while k >= 0 and (src[k].isalnum() or src[k] in "_."):
                k -= 1
            if k + 1 < i and src[k + 1].isdigit():
                i += 1
                continue
            j = i + 1
            while j < n and src[j] != "'":
                if src[j] == "\\":
                    j += 1
                j += 1
            blank(masked, i + 1, j)
            i = j + 1
        else:
            i += 1
    return "".join(nocomment), "".join(masked)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def match_forward(masked, i, open_c, close_c):
    """Index of the bracket closing masked[i] (== open_c); other bracket kinds are ignored."""
    depth = 0
    for k in range(i, len(masked)):
        c = masked[k]
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return k
    raise ConvertError(f"line {line_of(masked, i)}: unbalanced {open_c!r}")


def match_angle_backward(masked, i):
    """masked[i] == '>': index of the matching '<' (parentheses skipped)."""
    depth = 0
    paren = 0
    for k in range(i, -1, -1):
        c = masked[k]
        if c == ")":
            paren += 1
        elif c == "(":
            paren -= 1
        elif paren == 0 and c == ">":
            depth += 1
        elif paren == 0 and c == "<":
            depth -= 1
            if depth == 0:
                return k
    raise ConvertError(f"line {line_of(masked, i)}: unbalanced '>'")


def match_angle_forward(masked, i):
    depth = 0
    paren = 0
    for k in range(i, len(masked)):
        c = masked[k]
        if c == "(":
            paren += 1
        elif c == ")":
            paren -= 1
        elif paren == 0 and c == "<":
            depth += 1
        elif paren == 0 and c == ">":
            depth -= 1
            if depth == 0:
                return k
    raise ConvertError(f"line {line_of(masked, i)}: unbalanced '<'")


def split_top(text, sep=","):
    """Split at separators outside (), [], {}, <> (angle brackets counted naively)."""
    parts, depth, cur = [], 0, []
    for c in text:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def skip_ws(masked, i):
    while i < len(masked) and masked[i].isspace():
        i += 1
    return i


def skip_ws_back(masked, i):
    while i >= 0 and masked[i].isspace():
        i -= 1
    return i


# ---- scopes ------------------------------------------------------------------------------------


def brace_kinds(masked):
    """[(open, close, is_namespace)] for every {} pair."""
    out, stack = [], []
    for k, c in enumerate(masked):
        if c == "{":
            before = masked[max(0, k - 200):k]
            ns = bool(re.search(r'(?:\bnamespace\b(?:\s+[\w:]+)?|\bextern\s+"\s*")\s*$', before))
            stack.append((k, ns))
        elif c == "}":
            if not stack:
                raise ConvertError(f"line {line_of(masked, k)}: unbalanced '}}'")
            o, ns = stack.pop()
            out.append((o, k, ns))
    if stack:
        raise ConvertError(f"line {line_of(masked, stack[-1][0])}: unbalanced '{{'")
    return out


def at_namespace_level(braces, pos):
    return all(ns for o, c, ns in braces if o < pos < c)


# ---- the rewrite -------------------------------------------------------------------------------


class Converter:
    def __init__(self, src, name):
        self.src = src
        self.name = name
        self.nocomment, self.masked = lex_masks(src)
        self.edits = []  # (start, end, text)
        self.kernels = []  # dicts
        self.shared_id = 0
        self.notes = []

    def err(self, pos, msg):
        raise ConvertError(f"{self.name}:{line_of(self.src, pos)}: {msg}")

    def code(self, a, b):
        return self.nocomment[a:b]

    def keep_newlines(self, a, b, text):
        deficit = self.src.count("\n", a, b) - text.count("\n")
        if deficit < 0:
            self.err(a, "internal: replacement adds lines")
        return text + "\n" * deficit

    # -- checks --
    def check_forbidden(self):
        for pat, what in FORBIDDEN:
            m = re.search(pat, self.masked)
            if m:
                self.err(m.start(), f"{what} is not emulated")
        braces = self.braces
        for m in re.finditer(r"\b__CUDA_ARCH__\b", self.masked):
            line_start = self.masked.rfind("\n", 0, m.start()) + 1
            in_directive = self.masked[line_start:m.start()].lstrip().startswith("#")
            if not in_directive or not at_namespace_level(braces, m.start()):
                self.err(m.start(), "__CUDA_ARCH__ inside a function: device-only code is not emulated")
            self.notes.append(f"line {line_of(self.src, m.start())}: __CUDA_ARCH__ at namespace level "
                              "(undefined here, as in nvcc's host pass)")
        for m in re.finditer(r"\b__device__\b", self.masked):
            if not at_namespace_level(braces, m.start()):
                continue
            rest = self.masked[m.end():]
            k = re.search(r"[(;={]", rest)
            if k and k.group(0) in ";=":
                self.err(m.start(), "__device__ variables are not emulated")
        for m in re.finditer(r"#\s*include\s*<([^>]+)>", self.masked):
            h = m.group(1).strip()
            if h in CUDA_RUNTIME_HEADERS:
                continue
            if h.startswith(UNSUPPORTED_HEADER_PREFIXES):
                self.err(m.start(), f"header <{h}> is not emulated")

    # -- includes --
    def rewrite_includes(self):
        first = True
        for m in re.finditer(r"(?m)^[ \t]*#[ \t]*include[ \t]*<([^>]+)>[^\n]*", self.masked):
            if m.group(1).strip() in CUDA_RUNTIME_HEADERS:
                self.edits.append((m.start(), m.end(), '#include "cuda_sim.h"' if first else ""))
                first = False

    # -- kernels --
    def find_kernels(self):
        mk = self.masked
        for m in re.finditer(r"\b__global__\b", mk):
            g = m.start()
            # template header before it (static / inline allowed in between)
            k = skip_ws_back(mk, g - 1)
            while True:
                w = re.search(r"\b(static|inline)\s*$", mk[max(0, k - 10):k + 1])
                if not w:
                    break
                k = skip_ws_back(mk, k - len(w.group(1)))
            decl_start = g
            tparams = None
            if k >= 0 and mk[k] == ">":
                lt = match_angle_backward(mk, k)
                t = skip_ws_back(mk, lt - 1)
                if mk[max(0, t - 7):t + 1] == "template":
                    decl_start = t - 7
                    tparams = self.code(lt + 1, k)
            # after __global__: specifiers, void, __launch_bounds__, name, (params), { or ;
            i = m.end()
            saw_void = False
            bounds = None
            while True:
                i = skip_ws(mk, i)
                w = re.match(r"(void|static|inline|__noinline__|__forceinline__)\b", mk[i:])
                if w:
                    saw_void |= w.group(1) == "void"
                    i += w.end()
                    continue
                w = re.match(r"__launch_bounds__\s*\(", mk[i:])
                if w:
                    o = i + w.end() - 1
                    c = match_forward(mk, o, "(", ")")
                    bounds = self.code(o + 1, c)
                    i = c + 1
                    continue
                break
            if not saw_void:
                self.err(g, "a __global__ function must return void (declaration not understood)")
            w = re.match(r"([A-Za-z_]\w*)\s*\(", mk[i:])
            if not w:
                self.err(g, "kernel declaration not understood")
            name = w.group(1)
            po = i + w.end() - 1
            pc = match_forward(mk, po, "(", ")")
            j = skip_ws(mk, pc + 1)
            if j < len(mk) and mk[j] == ";":
                self.kernels.append(dict(name=name, decl_start=decl_start, body=None))
                continue
            if j >= len(mk) or mk[j] != "{":
                self.err(g, f"kernel {name}: expected its body after the parameter list")
            bc = match_forward(mk, j, "{", "}")
            names = []
            if tparams is not None:
                for p in split_top(tparams):
                    p = p.split("=")[0].strip()
                    pm = re.search(r"(\.\.\.)?\s*([A-Za-z_]\w*)\s*$", p)
                    if not pm or re.match(r"template\b", p):
                        self.err(g, f"kernel {name}: template parameter {p!r} not understood")
                    names.append(pm.group(2) + ("..." if pm.group(1) else ""))
            max_threads = "1024"
            if bounds is not None:
                parts = split_top(bounds)
                if not 1 <= len(parts) <= 3:
                    self.err(g, f"kernel {name}: __launch_bounds__({bounds}) not understood")
                max_threads = parts[0].strip()
            self.kernels.append(dict(name=name, decl_start=decl_start, body=(j, bc), tparams=names,
                                     max_threads=max_threads, shared=[]))

    def kernel_at(self, pos):
        for k in self.kernels:
            if k["body"] and k["body"][0] < pos < k["body"][1]:
                return k
        return None

    # -- shared memory --
    def rewrite_shared(self):
        mk = self.masked
        for m in re.finditer(r"\b__shared__\b", mk):
            s = m.start()
            # the statement around it: from the previous ; { } (or preprocessor line) to the next ;
            a = max(mk.rfind(";", 0, s), mk.rfind("{", 0, s), mk.rfind("}", 0, s)) + 1
            e = mk.find(";", s)
            if e < 0:
                self.err(s, "__shared__ declaration without ';'")
            lines = mk[a:s].split("\n")
            if len(lines) > 1:  # drop whole preprocessor lines before the statement
                keep = 0
                for idx, ln in enumerate(lines[:-1]):
                    if ln.strip().startswith("#") or not ln.strip():
                        keep = idx + 1
                    else:
                        break
                a += sum(len(ln) + 1 for ln in lines[:keep])
            a = skip_ws(mk, a)
            stmt = " ".join(self.code(a, e).split())
            dm = re.fullmatch(
                r"extern\s+(?:__align__\s*\(\s*(\d+)\s*\)\s+)?__shared__\s+(?:__align__\s*\(\s*(\d+)\s*\)\s+)?"
                r"(.+?)\s*\b([A-Za-z_]\w*)\s*\[\s*\]", stmt)
            if dm:
                align = dm.group(1) or dm.group(2) or "16"
                ty, nm = dm.group(3), dm.group(4)
                if re.search(r"[*&(=]", ty):
                    self.err(s, f"dynamic shared declaration type {ty!r} not understood")
                text = f"{ty}* {nm} = ::sim::dynamic_shared<{ty}>({align});"
                self.edits.append((a, e + 1, self.keep_newlines(a, e + 1, text)))
                continue
            sm = re.fullmatch(r"(?:static\s+)?(?:__align__\s*\(\s*(\d+)\s*\)\s+)?__shared__\s+"
                              r"(?:__align__\s*\(\s*(\d+)\s*\)\s+)?(.*)", stmt)
            if not sm or stmt.startswith("extern"):
                self.err(s, f"__shared__ declaration not understood: {stmt!r}")
            kern = self.kernel_at(s)
            if kern is None:
                self.err(s, "__shared__ variable outside a __global__ body (static shared size accounting needs it "
                            "in the kernel)")
            align = sm.group(1) or sm.group(2)
            decls = split_top(sm.group(3))
            first = re.fullmatch(r"(.*\S)\s+([A-Za-z_]\w*)\s*((?:\[[^\[\]]*\]\s*)*)", decls[0].strip())
            if not first or re.search(r"[*&(={}]", first.group(1)):
                self.err(s, f"__shared__ declaration not understood: {stmt!r}")
            ty = first.group(1)
            out = []
            for idx, d in enumerate(decls):
                if idx == 0:
                    nm, dims = first.group(2), first.group(3)
                else:
                    dm2 = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*((?:\[[^\[\]]*\]\s*)*)", d)
                    if not dm2:
                        self.err(s, f"__shared__ declarator {d!r} not understood")
                    nm, dims = dm2.group(1), dm2.group(2)
                full = f"{ty}{''.join(dims.split())}"
                self.shared_id += 1
                al = f", {align}" if align else ""
                out.append(f"auto& {nm} = ::sim::static_shared<{full}{al}>({self.shared_id}, \"{nm}\");")
                kern["shared"].append(f"sizeof({full})")
            self.edits.append((a, e + 1, self.keep_newlines(a, e + 1, " ".join(out))))

    def register_kernels(self):
        declared = set()
        for k in self.kernels:
            if k["name"] not in declared:
                declared.add(k["name"])
                self.edits.append((k["decl_start"], k["decl_start"],
                                   f'static constexpr char sim_kname_{k["name"]}[] = "{k["name"]}"; '))
            if not k["body"]:
                continue
            ref = f'&{k["name"]}' + (f'<{", ".join(k["tparams"])}>' if k["tparams"] else "")
            smem = " + ".join(["0"] + k["shared"])
            o = k["body"][0] + 1
            self.edits.append((o, o, f' (void)::sim::KernelReg<{ref}, sim_kname_{k["name"]}, (size_t)({smem}), '
                                     f'(int)({k["max_threads"]})>::reg; ::sim::kernel_enter(__PRETTY_FUNCTION__);'))

    # -- launches --
    def rewrite_launches(self):
        mk = self.masked
        count = 0
        for m in re.finditer(r"<<<", mk):
            p = m.start()
            # callee: identifier (qualified), optionally with template arguments
            k = skip_ws_back(mk, p - 1)
            end_callee = k + 1
            if k >= 0 and mk[k] == ">":
                k = skip_ws_back(mk, match_angle_backward(mk, k) - 1)
            w = re.search(r"((?:::)?[A-Za-z_]\w*(?:\s*::\s*[A-Za-z_]\w*)*)$", mk[max(0, k - 300):k + 1])
            if not w:
                self.err(p, "kernel launch: callee not understood (use a kernel name or a function pointer variable)")
            start = k + 1 - len(w.group(1))
            callee = " ".join(self.code(start, end_callee).split())
            # configuration up to >>> at depth 0
            depth, q = 0, p + 3
            while q < len(mk):
                c = mk[q]
                if c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                elif depth == 0 and mk.startswith(">>>", q):
                    break
                q += 1
            else:
                self.err(p, "kernel launch: no matching '>>>'")
            config = split_top(self.code(p + 3, q))
            if not 2 <= len(config) <= 4 or any(not c.strip() for c in config):
                self.err(p, f"kernel launch: configuration <<<{self.code(p + 3, q).strip()}>>> not understood")
            config = [" ".join(c.split()) for c in config] + ["0", "0"][len(config) - 2:]
            o = skip_ws(mk, q + 3)
            if o >= len(mk) or mk[o] != "(":
                self.err(p, "kernel launch: expected the argument list after '>>>'")
            c = match_forward(mk, o, "(", ")")
            semi = skip_ws(mk, c + 1)
            if semi >= len(mk) or mk[semi] != ";":
                self.err(p, "kernel launch: expected ';' after the arguments (a launch must be a statement)")
            if re.search(r"(?m)^\s*#", self.masked[start:semi + 1]):
                self.err(p, "kernel launch: preprocessor directive inside the launch")
            args = self.code(o + 1, c).strip()
            config_text = ", ".join("(" + x + ")" for x in config)
            text = f"::sim::launch({callee}, {config_text}" + (f", {args}" if args else "") + ");"
            self.edits.append((start, semi + 1, self.keep_newlines(start, semi + 1, text)))
            count += 1
        return count

    def run(self):
        self.braces = brace_kinds(self.masked)
        self.check_forbidden()
        self.rewrite_includes()
        self.find_kernels()
        self.rewrite_shared()
        self.register_kernels()
        launches = self.rewrite_launches()
        edits = sorted(self.edits, key=lambda e: (e[0], e[1]))
        for (a0, b0, _), (a1, b1, _) in zip(edits, edits[1:]):
            if a1 < b0:
                raise ConvertError(f"{self.name}:{line_of(self.src, a1)}: internal: overlapping rewrites")
        out, pos = [], 0
        for a, b, t in edits:
            out.append(self.src[pos:a])
            out.append(t)
            pos = b
        out.append(self.src[pos:])
        text = "".join(out)
        if text.count("\n") != self.src.count("\n"):
            raise ConvertError(f"{self.name}: internal: line count changed")
        _, masked = lex_masks(text)
        for pat in (r"<<<", r"\b__shared__\b"):
            mm = re.search(pat, masked)
            if mm:
                raise ConvertError(f"{self.name}:{line_of(text, mm.start())}: internal: {pat} left after rewriting")
        if self.src.count("<<<") and launches != len(re.findall(r"<<<", self.masked)):
            raise ConvertError(f"{self.name}: internal: not every launch was rewritten")
        kernels = [k for k in self.kernels if k["body"]]
        summary = (f"{self.name}: {len(kernels)} kernel(s) "
                   f"({', '.join(sorted(set(k['name'] for k in kernels)))}), {launches} launch(es), "
                   f"{self.shared_id} static __shared__ variable(s)")
        return f'#line 1 "{self.name}"\n' + text, summary


def convert(src_path, out_path, name=None):
    with open(src_path, encoding="utf-8") as f:
        src = f.read()
    text, summary = Converter(src, name or src_path).run()
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out_path)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--name", help="file name for #line (default: SRC as given)")
    a = ap.parse_args()
    try:
        print(convert(a.src, a.out, a.name), file=sys.stderr)
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
