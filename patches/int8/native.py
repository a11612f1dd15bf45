"""Core's native INT8 Linears (ComfyUI 0.27+), and the pack's GEMM under them where it measures faster.

On a core with the native INT8 layout (patches/core_compat.native_int8_layout), per-channel INT8 layers
are core's own mixed-precision Linears holding a QuantizedTensor: core's LoRA (dequantize, patch,
requantize), lowvram, offloading and saving handle them exactly as they handle a native INT8 file, and
LoRA keeps the INT8 GEMM running. `native_linear` builds one from a float Linear through core's own
loading code; `accelerate` object-patches every such layer of a MODEL with a view of itself
(fused_norms.module_view: same parameters, only forward differs) whose forward, for the calls core
would run through comfy-kitchen's `int8_linear`, runs the faster of that and the pack's own INT8 GEMM
(kernels.int8: Triton on CUDA, oneDNN on x86 CPUs), measured once per (device, dtype, shape) on a
slice of the real input (kernels/fastest.py). Every other call (LoRA in lowvram, casting, training)
goes to core's forward unchanged.
"""
from __future__ import annotations

import functools

import torch

from ...kernels import int8 as int8_kernels
from ...kernels.fastest import Fastest
from ...models import int8_format
from .. import core_compat
from ..fused_norms import module_view

FASTEST = Fastest()
# rows of the input the two GEMMs are timed on: comfy-kitchen's CPU fallback (torch._int_mm) runs at about
# 1 GFLOP/s on an AVX2 CPU, so on the CPU the measurement takes a small slice
TRIAL_ROWS = {"cuda": 1024, "cpu": 16}
BACKENDS = (*int8_kernels.BACKENDS, "core")  # "auto": measured; a pack backend; "core": comfy-kitchen's


def available() -> bool:
    return core_compat.native_int8_layout() is not None


def native_linear(linear: torch.nn.Linear, compute_dtype: torch.dtype):
    """Core's native INT8 Linear holding `linear` quantized per output channel (the float one is untouched)."""
    q, scale = int8_kernels.quantize(linear.weight.detach().float(), "per_channel", backend="torch")
    state = {key.split(".", 1)[1]: value for key, value in int8_format.file_entries("w", q, scale).items()}
    if linear.bias is not None:
        state["bias"] = linear.bias.detach().to(compute_dtype)
    return core_compat.native_int8_linear(state, linear.in_features, linear.out_features, linear.weight.device,
                                          compute_dtype)


class PackGemm:
    """Mixin for the view of a core native INT8 Linear (see module docstring)."""
    turbo_backend = "auto"

    def _cpu_weight(self, q, scale, rows):
        """oneDNN's prepacked copy of (q, scale), packed again whenever the weight tensors are other objects
        (a LoRA requantizes into new ones); holding them keeps their memory from being reused meanwhile."""
        cache = self.__dict__.get("_turbo_cpu_weight")
        if cache is None or cache[0] is not q or cache[1] is not scale:
            self.__dict__["_turbo_cpu_weight"] = cache = (q, scale, int8_kernels.pack_cpu_weight(q, rows))
        return cache[2]

    def _pack_linear(self, x, q, scale, bias, backend="auto"):
        rows = scale.float().reshape(-1, 1).expand(q.shape[0], 1) if scale.numel() == 1 else scale.float()
        backend = int8_kernels.resolve_backend(x, backend)
        cpu_weight = self._cpu_weight(q, scale, rows) if backend == "onednn" else None
        return int8_kernels.linear(x, q, rows, bias, backend, cpu_weight)

    def forward(self, x, *args, **kwargs):
        operands = core_compat.native_int8_operands(self, x)
        if operands is None or self.turbo_backend == "core":
            return super().forward(x, *args, **kwargs)
        bias = None if self.bias is None else self.bias.detach().to(x.device, x.dtype)
        pack = functools.partial(self._pack_linear, x, *operands, bias, self.turbo_backend)
        if self.turbo_backend != "auto":
            return pack()
        key = ("int8_linear", str(x.device), x.dtype, tuple(operands[0].shape), operands[1].numel() == 1)
        if FASTEST.chosen(key) is None:
            self._measure(key, x, operands, bias, args, kwargs)
        return pack() if FASTEST.chosen(key) == "pack" else super().forward(x, *args, **kwargs)

    def _measure(self, key, x, operands, bias, args, kwargs):
        rows = x.reshape(-1, x.shape[-1])[: TRIAL_ROWS.get(x.device.type, 256)]
        candidates = {"pack": functools.partial(self._pack_linear, rows, *operands, bias),
                      "core": functools.partial(super().forward, rows, *args, **kwargs)}
        FASTEST.run(key, candidates, cuda=x.is_cuda, preferred="core")


def view(layer, backend: str = "auto"):
    """`layer` (a core native INT8 Linear) seen through PackGemm."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    patched = module_view(layer, PackGemm)
    patched.turbo_backend = backend
    return patched


def accelerate(model, backend: str = "auto"):
    """`model` (a fresh MODEL from core's loader) with every native INT8 Linear seen through PackGemm."""
    diffusion_model = model.get_model_object("diffusion_model")
    for name, module in diffusion_model.named_modules():
        if core_compat.is_native_int8(module) and not isinstance(module, PackGemm):
            model.add_object_patch(f"diffusion_model.{name}", view(module, backend))
    return model
