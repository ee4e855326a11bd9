"""Compile the fused DGMN kernels for an NVIDIA target without a GPU and report resources.

Triton lowers to PTX and runs ``ptxas`` on the CPU, so registers, spills (stack frame, local
loads/stores), shared memory and the mix of memory instructions can be read before any GPU
time is spent::

    python benchmarks/inspect_kernels.py                       # sm_90 (H100), bench sizes
    python benchmarks/inspect_kernels.py --dtype fp32 --json out.json --dump-dir /tmp/k

Specialisation follows Triton's launcher: pointers and ints divisible by 16 get the
``tt.divisibility=16`` hint, ints equal to 1 become constants.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend

from dgmn.ops.triton import _kernels
from dgmn.ops.triton.fused import KernelConfig, default_config

_TRITON_BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
_DTYPES = {"bf16": "*bf16", "fp16": "*fp16", "fp32": "*fp32"}


def _specialise(fn: Any, values: dict[str, Any], constexprs: set[str]
                ) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int], Any]]:
    signature: dict[str, str] = {}
    constants: dict[str, Any] = {}
    attrs: dict[tuple[int], Any] = {}
    for index, name in enumerate(fn.arg_names):
        value = values[name]
        if name in constexprs:
            signature[name] = "constexpr"
            constants[name] = value
        elif isinstance(value, str):
            signature[name] = value
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif value == 1:
            signature[name] = "constexpr"
            constants[name] = 1
        else:
            signature[name] = "i32"
            if value % 16 == 0:
                attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constants, attrs


def kernel_arguments(batch: int, channels: int, height: int, width: int, num_rates: int,
                     groups: int, kernel_size: int, dtype: str, walks: bool, kernel: str,
                     config: KernelConfig, output_nchw: bool = True
                     ) -> tuple[dict[str, Any], set[str]]:
    """Argument values of a launch of ``kernel`` (a key of ``KERNELS``) as ``fused`` makes it
    on contiguous inputs: features and grad_out converted channels-last."""
    k = kernel_size * kernel_size
    hw = height * width
    cg = channels // groups
    chunks = triton.cdiv(cg, config.block_c)
    ptr = _DTYPES[dtype]
    values: dict[str, Any] = {
        "feat_ptr": ptr, "walks_ptr": ptr, "weights_ptr": ptr, "rates_ptr": "*i32",
        "H": height, "W": width, "CG": cg, "G": groups, "S": num_rates,
        "sf_b": hw * channels, "sf_c": 1, "sf_h": width * channels, "sf_w": channels,
        "swk_b": num_rates * k * 2 * hw, "swk_q": k * 2 * hw, "swk_k": 2 * hw, "swk_d": hw,
        "swk_h": width, "swk_w": 1,
        "swt_b": num_rates * groups * k * hw, "swt_q": groups * k * hw, "swt_g": k * hw,
        "swt_k": hw, "swt_h": width, "swt_w": 1,
        "KS": kernel_size, "HAS_WALKS": walks, "CHUNKS": chunks,
        "TILE_H": config.tile_h, "TILE_W": config.tile_w, "BLOCK_C": config.block_c,
    }
    out_strides = ((channels * hw, hw, width, 1) if output_nchw
                   else (channels * hw, 1, width * channels, channels))
    constexprs = {"KS", "HAS_WALKS", "CHUNKS", "TILE_H", "TILE_W", "BLOCK_C"}
    if kernel == "cell_keys":
        values.update({"keys_ptr": "*i32", "total": batch * num_rates * k * hw, "BLOCK": 1024})
        return values, {"KS", "BLOCK"}
    if kernel == "fwd":
        values["out_ptr"] = ptr
        values.update(zip(("so_b", "so_c", "so_h", "so_w"), out_strides, strict=True))
        return values, constexprs
    cl_strides = (channels * hw, 1, width * channels, channels)
    values.update({
        "gout_ptr": ptr, "gfeat_ptr": ptr, "gwalk_ptr": "*fp32",
        "order_ptr": "*i32", "starts_ptr": "*i32", "tile_max_ptr": "*i32",
        "gweight_ptr": "*fp32" if chunks > 1 else ptr,
        "sgf_b": hw * channels, "sgf_h": width * channels, "sgf_w": channels,
        "sgk_b": num_rates * k * 2 * hw, "sgk_q": k * 2 * hw, "sgk_k": 2 * hw, "sgk_d": hw,
        "sgt_b": num_rates * groups * k * hw, "sgt_q": groups * k * hw, "sgt_g": k * hw,
        "sgt_k": hw,
        "NEED_WALK": walks, "NEED_WEIGHT": True,
        "ATOMIC_WALK": groups * chunks > 1, "ATOMIC_WEIGHT": chunks > 1,
    })
    values.update(zip(("sgo_b", "sgo_c", "sgo_h", "sgo_w"), cl_strides, strict=True))
    values["sgf_c"] = 1
    if kernel == "bwd_feat_scatter":  # fp32 grad_out and fp32 accumulation buffer
        values.update(gout_ptr="*fp32", gfeat_ptr="*fp32")
    constexprs |= {"NEED_WALK", "NEED_WEIGHT", "ATOMIC_WALK", "ATOMIC_WEIGHT"}
    return values, constexprs


def _sass_counts(sass: str) -> dict[str, int]:
    ops = Counter()
    for line in sass.splitlines():
        match = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", line)
        if match:
            ops[match.group(1)] += 1
    keep = ("LDG", "STG", "RED", "ATOM", "LDL", "STL", "LDS", "STS", "FFMA", "FMUL", "FADD")
    return {op: n for op, n in sorted(ops.items()) if op.startswith(keep)}


def _resource_usage(cubin: Path) -> dict[str, int]:
    text = subprocess.run([str(_TRITON_BIN / "cuobjdump"), "--dump-resource-usage", str(cubin)],
                          capture_output=True, text=True, check=True).stdout
    usage = {}
    for key in ("REG", "STACK", "SHARED", "LOCAL"):
        match = re.search(rf"\b{key}:(\d+)", text)
        if match:
            usage[key.lower()] = int(match.group(1))
    return usage


KERNELS = {"fwd": "dgmn_fwd_kernel", "bwd_feat_gather": "dgmn_bwd_feat_gather_kernel",
           "bwd_feat_scatter": "dgmn_bwd_feat_kernel", "bwd_param": "dgmn_bwd_param_kernel",
           "cell_keys": "dgmn_cell_keys_kernel"}


def compile_report(name: str, config: KernelConfig, *, arch: int = 90,
                   dump_dir: Path | None = None, output_nchw: bool = True,
                   **problem: Any) -> dict[str, Any]:
    """Compile kernel ``name`` (a key of ``KERNELS``) for ``sm_<arch>``; resources and mix."""
    fn = getattr(_kernels, KERNELS[name])
    values, constexprs = kernel_arguments(kernel=name, config=config, output_nchw=output_nchw,
                                          **problem)
    values = {key: value for key, value in values.items() if key in fn.arg_names}
    constexprs &= set(fn.arg_names)
    signature, constants, attrs = _specialise(fn, values, constexprs)
    target = GPUTarget("cuda", arch, 32)
    options = make_backend(target).parse_options({"num_warps": config.num_warps,
                                                  "num_stages": config.num_stages})
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(fn, signature, constants, attrs), target=target,
                              options=options.__dict__)
    seconds = time.perf_counter() - start
    out_dir = dump_dir or Path("/tmp/dgmn_kernels")
    out_dir.mkdir(parents=True, exist_ok=True)
    cubin = out_dir / f"{name}.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    for ext in ("ttgir", "ptx"):
        (out_dir / f"{name}.{ext}").write_text(compiled.asm[ext])
    sass = subprocess.run([str(_TRITON_BIN / "nvdisasm"), "-c", str(cubin)],
                          capture_output=True, text=True, check=True).stdout
    (out_dir / f"{name}.sass").write_text(sass)
    return {"kernel": name, "config": config.__dict__, "compile_s": round(seconds, 2),
            **_resource_usage(cubin), "sass": _sass_counts(sass)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="bf16")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--rates", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(97, 97))
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--no-walks", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--dump-dir", type=Path)
    args = parser.parse_args(argv)
    problem = dict(batch=2, channels=args.channels, height=args.size[0], width=args.size[1],
                   num_rates=args.rates, groups=args.groups, kernel_size=3, dtype=args.dtype,
                   walks=not args.no_walks)
    cg = args.channels // args.groups
    rows = []
    for name in KERNELS:
        config = default_config(cg, backward=name != "fwd",
                                element_size=4 if args.dtype == "fp32" else 2)
        rows.append(compile_report(name, config, arch=args.arch, dump_dir=args.dump_dir,
                                   **problem))
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
