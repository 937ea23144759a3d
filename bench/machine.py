"""What the figures were measured on, and this CPU's measured peak arithmetic rates."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import best_seconds

INTERESTING_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
)


def cpu_info() -> dict[str, Any]:
    model, flags, mhz = platform.processor() or "unknown", set(), None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name":
                model = value
            elif key == "flags":
                flags = set(value.split())
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "reported_mhz": mhz,
        "flags": [flag for flag in INTERESTING_FLAGS if flag in flags],
    }


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch
    from fast_serving import physical_core_count

    return {
        "cpu": {**cpu_info(), "physical_cores": physical_core_count()},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.__version__,
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "onnxruntime_intra_op": physical_core_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def torch_matmul_flops(side: int, dtype_name: str, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n matmul through PyTorch (oneDNN/MKL): fp32 FMA or bf16 dot-product peak."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(side, side, generator=generator).to(dtype)
    right = torch.randn(side, side, generator=generator).to(dtype)
    seconds = best_seconds(lambda: torch.mm(left, right), repeats)
    return 2.0 * side**3 / seconds


def onnxruntime_matmul_ops(side: int, kind: str, repeats: int = 5) -> float:
    """Op/s of an n x n x n matmul in onnxruntime: fp32 ``MatMul`` (MLAS SGEMM) or u8 x s8
    ``MatMulInteger`` (the QGEMM kernels int8 Conv uses, VNNI where the CPU has it)."""
    import onnx
    import onnxruntime as ort
    from fast_serving import session_options
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "int8":
        op, weights = "MatMulInteger", rng.integers(-128, 127, (side, side), dtype=np.int8)
        activations = rng.integers(0, 255, (side, side), dtype=np.uint8)
        types = (TensorProto.UINT8, TensorProto.INT32)
    elif kind == "fp32":
        op, weights = "MatMul", rng.standard_normal((side, side), dtype=np.float32)
        activations = rng.standard_normal((side, side), dtype=np.float32)
        types = (TensorProto.FLOAT, TensorProto.FLOAT)
    else:
        raise ValueError(f"kind must be int8 or fp32, got {kind!r}")
    graph = helper.make_graph(
        [helper.make_node(op, ["activations", "weights"], ["product"])],
        f"{kind}_peak",
        [helper.make_tensor_value_info("activations", types[0], [side, side])],
        [helper.make_tensor_value_info("product", types[1], [side, side])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    seconds = best_seconds(lambda: session.run(None, {"activations": activations}), repeats)
    return 2.0 * side**3 / seconds


def openvino_int8_conv_ops(channels: int = 256, side: int = 56, depth: int = 4, repeats: int = 5) -> float:
    """Op/s of OpenVINO's int8 convolutions where they run fastest: a chain of ``depth`` QDQ 3x3
    convolutions (u8 x s8, oneDNN: VNNI, AMX) on ``channels`` x ``side`` x ``side`` maps, ResNet's
    most compute-dense shapes. A chain, because one convolution's time is mostly converting its
    float input and output (measured: 1.9 TOP/s for one, 4.5 for four); an int8 MatMul in
    OpenVINO (1.7 TOP/s) would understate what its convolutions reach."""
    import onnx
    import openvino
    from fast_serving import openvino_config
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    initializers = {
        "activation_scale": np.array(0.05, np.float32),
        "activation_zero": np.array(0, np.uint8),
        "weight_scale": np.array(0.002, np.float32),
        "weight_zero": np.array(0, np.int8),
    }
    nodes, tensor = [], "activations"
    for layer in range(depth):
        initializers[f"weights{layer}"] = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
        nodes += [
            helper.make_node(
                "QuantizeLinear", [tensor, "activation_scale", "activation_zero"], [f"a{layer}_q"]
            ),
            helper.make_node(
                "DequantizeLinear", [f"a{layer}_q", "activation_scale", "activation_zero"], [f"a{layer}"]
            ),
            helper.make_node(
                "QuantizeLinear", [f"weights{layer}", "weight_scale", "weight_zero"], [f"w{layer}_q"]
            ),
            helper.make_node(
                "DequantizeLinear", [f"w{layer}_q", "weight_scale", "weight_zero"], [f"w{layer}"]
            ),
            helper.make_node("Conv", [f"a{layer}", f"w{layer}"], [f"conv{layer}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"conv{layer}"], [f"relu{layer}"]),
        ]
        tensor = f"relu{layer}"
    shape = [1, channels, side, side]
    graph = helper.make_graph(
        nodes,
        "int8_conv_peak",
        [helper.make_tensor_value_info("activations", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU", openvino_config())
    request = compiled.create_infer_request()
    activations = np.abs(rng.standard_normal(shape, dtype=np.float32))
    seconds = best_seconds(lambda: request.infer({0: activations}), repeats)
    return depth * 2.0 * side * side * channels * channels * 9 / seconds


_BEST_PEAKS: dict[str, float] = {}


def measured_peaks(sides: tuple[int, ...]) -> dict[str, Any]:
    """Peak rates as large matmuls reach them on this machine (GFLOP/s, GOP/s for int8).

    Each rate is the best over the matmul sizes ``sides``; fp32 is the better of
    PyTorch's and onnxruntime's matmuls, int8 the better of onnxruntime's matmul
    and OpenVINO's convolutions: a peak below what any runtime reaches would
    flatter every figure judged against it (on an AMD EPYC onnxruntime's fp32
    convolutions ran faster than PyTorch's 2048^3 matmul). Measured again at
    every call (sections call it right after their own measurements) and the
    best seen in this run is kept: a peak taken while other work shares the
    cores understates the machine, too.
    """
    for side in sides:
        fresh = {
            "fp32_gflops_torch": torch_matmul_flops(side, "fp32") / 1e9,
            "fp32_gflops_onnxruntime": onnxruntime_matmul_ops(side, "fp32") / 1e9,
            "bf16_gflops": torch_matmul_flops(side, "bf16") / 1e9,
            "int8_gops_onnxruntime": onnxruntime_matmul_ops(side, "int8") / 1e9,
        }
        for name, value in fresh.items():
            _BEST_PEAKS[name] = max(_BEST_PEAKS.get(name, 0.0), value)
    _BEST_PEAKS["int8_gops_openvino"] = max(
        _BEST_PEAKS.get("int8_gops_openvino", 0.0), openvino_int8_conv_ops() / 1e9
    )
    _BEST_PEAKS["fp32_gflops"] = max(_BEST_PEAKS["fp32_gflops_torch"], _BEST_PEAKS["fp32_gflops_onnxruntime"])
    _BEST_PEAKS["int8_gops"] = max(_BEST_PEAKS["int8_gops_onnxruntime"], _BEST_PEAKS["int8_gops_openvino"])
    return {**_BEST_PEAKS, "matrix_sides": list(sides)}


def model_flops(model: Any, image_size: int) -> float:
    """Forward FLOPs of one image (a multiply-add counts 2; "ResNet50 = 4.1 GFLOPs" counts it 1)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return float(counter.get_total_flops())
