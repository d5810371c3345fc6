"""Compile the fused CUDA kernels (minialbert/layers/fused.py) with NVRTC, without a GPU.

    pip download --no-deps -d /tmp/nvrtc nvidia-cuda-nvrtc-cu12        # once, ~90 MB
    python -m zipfile -e /tmp/nvrtc/nvidia_cuda_nvrtc_cu12-*.whl /tmp/nvrtc/ext
    python benchmarks/compile_kernels.py --nvrtc /tmp/nvrtc/ext/nvidia/cuda_nvrtc/lib/libnvrtc.so.12

Catches what a CPU can catch of CUDA code, compile errors, in every template
instantiation (9 kernels x float32/float16/bfloat16), for the given architecture
(default compute_90: H100/H200). Running the kernels needs a GPU: tests/test_fused.py.
Exit status 0 when every instantiation compiles; the NVRTC log otherwise.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def find_nvrtc() -> str | None:
    try:
        import nvidia.cuda_nvrtc as pkg  # noqa: PLC0415
        hits = glob.glob(str(Path(list(pkg.__path__)[0]) / "lib" / "libnvrtc.so*"))
        if hits:
            return sorted(hits)[0]
    except ImportError:
        pass
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvrtc", default=None, help="path to libnvrtc.so (default: the nvidia-cuda-nvrtc package)")
    ap.add_argument("--arch", default="compute_90")
    args = ap.parse_args(argv)
    from minialbert.layers import fused

    path = args.nvrtc or find_nvrtc()
    if path is None:
        print("no libnvrtc found: pass --nvrtc PATH (see the module docstring)", file=sys.stderr)
        return 2
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), fused.SOURCE.encode(), b"fused.cu", 0, None, None):
        print("nvrtcCreateProgram failed", file=sys.stderr)
        return 1
    names = fused.name_expressions()
    for n in names:
        lib.nvrtcAddNameExpression(prog, n.encode())
    opts = [b"-std=c++14", f"--gpu-architecture={args.arch}".encode()]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    if rc:
        print(log.value.decode(errors="replace"), file=sys.stderr)
        print(f"FAILED: NVRTC error {rc}", file=sys.stderr)
        return 1
    lowered = []
    for n in names:
        p = ctypes.c_char_p()
        if lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(p)) == 0:
            lowered.append(n)
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    print(f"compiled {len(lowered)}/{len(names)} instantiations for {args.arch}, {size.value} bytes of PTX")
    return 0 if len(lowered) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
