"""Command line: ``tbfast info`` (or ``python -m tbfast info``) prints the backend table."""

import argparse
import os
import sys


def info(out=sys.stdout):
    from . import __version__, _native, backends

    forced = os.environ.get(backends.ENV_VAR) or "(not set)"
    print(f"tbfast {__version__}   {backends.ENV_VAR}={forced}", file=out)
    cpu_mod, cpu_why = _native.cpu()
    print(f"native CPU module tbfast._C: {'loaded' if cpu_mod else cpu_why}", file=out)
    cuda_mod, cuda_why = _native._load("_C_cuda")
    if cuda_mod is None:
        print(f"native CUDA module tbfast._C_cuda: {cuda_why}", file=out)
    else:
        count, err, msg = cuda_mod.device_count()
        rt, drv = cuda_mod.versions()
        print(f"native CUDA module tbfast._C_cuda: loaded (runtime {rt}, driver {drv}, {count} device(s)"
              f"{'; ' + msg if err else ''})", file=out)
    print(f"CPU threads for kernels: {_native.num_threads()}", file=out)
    if cpu_mod is not None:
        print(f"CPU SIMD level: {cpu_mod.cpu_simd_level()} (TBFAST_SIMD caps it)", file=out)
    print(file=out)
    rows = backends.table()
    w = max(len(r[0]) for r in rows)
    print(f"{'op':{w}}  device  backend    available  why not", file=out)
    for op, device, name, ok, why in rows:
        print(f"{op:{w}}  {device:6}  {name:9}  {'yes' if ok else 'no':9}  {why}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tbfast", description="tbfast command line")
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("info", help="print the backends available for each op and device, and why not")
    args = parser.parse_args(argv)
    if args.cmd == "info":
        info()
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
