"""The pack's own INT8 Linear: ComfyUI 0.8's INT8 path, and block-128 weights on every core version.

Int8Linear subclasses comfy.ops.manual_cast.Linear (so it is a CastWeightBiasOp). In INT8 mode
.weight is an int8 Parameter [out, in] and the buffer .weight_scale holds per-channel [out, 1] or
128x128-block scales; .bias stays float. So LoRA keys (diffusion_model.<path>.weight) resolve to it:
- convert_weight(w) dequantizes (ModelPatcher calls it before adding LoRA deltas) and
  set_weight(w) re-quantizes the patched float weight into a NEW Parameter with its own scale.
  ModelPatcher only backs up and restores .weight, so the new scale is tied to that Parameter
  object (a weak reference): once .weight is restored, the original scale applies again.
- With comfy_cast_weights (lowvram / offload) or weight_function / bias_function set, forward
  moves the int8 weight to the input's device, dequantizes, applies those functions, F.linear.
- Otherwise forward is the W8A8 layer of kernels.int8 (Triton on CUDA, oneDNN on x86 CPUs, the
  oneDNN weight prepacked once per weight).
Its state dict is the file format of models/int8_format (per-channel layers in core's native INT8
layout, block layers tagged so that core refuses them), so whatever saves it (TurboSaveQuantized or
core's own model-save nodes) writes a file no core loader reads wrongly. It loads that format, the pack's
version-1 files and per-tensor scales (models/int8_format.internal_state). A Linear whose weight is not
int8 behaves exactly like comfy's manual_cast Linear, which is what Int8Ops relies on.
"""
from __future__ import annotations

import weakref

import comfy.ops
import torch
import torch.nn.functional as F

from ...kernels import int8 as int8_kernels
from ...kernels.int8_reference import expand_block_scale, is_block_scale
from ...models import int8_format

SCALE_KEY, QUANT_KEY = int8_format.SCALE_SUFFIX[1:], int8_format.QUANT_SUFFIX[1:]


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    scale = scale.to(q.device, torch.float32)
    if is_block_scale(q, scale):
        scale = expand_block_scale(scale, *q.shape)
    return (q.float() * scale).to(dtype)


class Int8Linear(comfy.ops.manual_cast.Linear):
    backend = "auto"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_scale", None)
        self.register_buffer("weight_scale_patched", None, persistent=False)
        self._patched_weight = None  # weakref to the Parameter that weight_scale_patched belongs to
        self._cpu_cache = None

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, granularity: str = "per_channel", backend: str = "auto"):
        """An INT8 copy of a float Linear (the original is left untouched)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        q, scale = int8_kernels.quantize(linear.weight.detach().float(), granularity, backend="torch")
        layer.set_int8(q, scale, None if linear.bias is None else linear.bias.detach().clone())
        layer.backend = backend
        return layer

    @property
    def is_int8(self) -> bool:
        return self.weight.dtype == torch.int8

    def set_int8(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        int8_format.check_scale_shape("weight", q, scale)
        self.weight = torch.nn.Parameter(q, requires_grad=False)
        self.weight_scale = scale.float()
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.comfy_cast_weights = False  # instance attribute: ModelPatcher's lowvram toggles it
        self.weight_scale_patched, self._patched_weight, self._cpu_cache = None, None, None

    def current_scale(self) -> torch.Tensor:
        patched = self._patched_weight() if self._patched_weight is not None else None
        if patched is not None and patched is self.weight:
            return self.weight_scale_patched
        return self.weight_scale

    def convert_weight(self, weight, inplace=False, **kwargs):
        if not self.is_int8:
            return weight
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        return dequantize(weight, self.current_scale(), dtype)

    def set_weight(self, weight, inplace_update=False, seed=None, return_weight=False, **kwargs):
        if not self.is_int8:
            weight = weight.to(self.weight.dtype)
            if return_weight:
                return weight
            self.weight = torch.nn.Parameter(weight, requires_grad=False)
            return None
        granularity = "block128" if is_block_scale(self.weight, self.weight_scale) else "per_channel"
        q, scale = int8_kernels.quantize(weight.float(), granularity, backend="torch")
        if return_weight:
            return q
        if inplace_update:
            raise ValueError("Int8Linear cannot be patched in place (weight_inplace_update); "
                             "ComfyUI's own quantized layers have the same limit")
        self.weight = torch.nn.Parameter(q, requires_grad=False)
        self.weight_scale_patched = scale
        self._patched_weight = weakref.ref(self.weight)
        return None

    def _dequantized_weight_and_bias(self, x: torch.Tensor):
        weight = dequantize(self.weight.to(x.device), self.current_scale(), x.dtype)
        for fn in self.weight_function:
            weight = fn(weight)
        bias = None if self.bias is None else self.bias.to(x.device, x.dtype, copy=True)
        for fn in self.bias_function if bias is not None else ():
            bias = fn(bias)
        return weight, bias

    def _cpu_weight(self, scale: torch.Tensor):
        """oneDNN's prepacked weight, packed again whenever .weight or its scale is another tensor object
        (LoRA patching and restoring swap them); holding them keeps their memory from being reused."""
        cache = self._cpu_cache
        if cache is None or cache[0] is not self.weight or cache[1] is not scale:
            self._cpu_cache = cache = (self.weight, scale, int8_kernels.pack_cpu_weight(self.weight, scale))
        return cache[2]

    def forward(self, x, *args, **kwargs):
        if not self.is_int8:
            return super().forward(x, *args, **kwargs)
        if self.comfy_cast_weights or self.weight_function or self.bias_function:
            return F.linear(x, *self._dequantized_weight_and_bias(x))
        scale = self.current_scale().to(x.device)
        bias = None if self.bias is None else self.bias.to(x.device, x.dtype)
        backend = int8_kernels.resolve_backend(x, self.backend)
        cpu_weight = self._cpu_weight(scale) if backend == "onednn" else None
        return int8_kernels.linear(x, self.weight.to(x.device), scale, bias, backend, cpu_weight)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.is_int8:
            destination.update(int8_format.file_entries(prefix[:-1], self.weight if keep_vars else self.weight.detach(),
                                                        self.current_scale()))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + SCALE_KEY not in state_dict:
            return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                                 unexpected_keys, error_msgs)
        name = prefix[:-1]
        entries = {f"{name}.{key}": state_dict[prefix + key] for key in ("weight", SCALE_KEY, QUANT_KEY)
                   if prefix + key in state_dict}
        try:
            entries = int8_format.internal_state(entries)
        except ValueError as error:
            error_msgs.append(str(error))
            return None
        weight, scale, bias = entries[f"{name}.weight"], entries[f"{name}.{SCALE_KEY}"], state_dict.get(prefix + "bias")
        if tuple(weight.shape) != (self.out_features, self.in_features):
            error_msgs.append(f"{prefix}weight: expected int8 [{self.out_features}, {self.in_features}]; "
                              f"got {list(weight.shape)}")
            return None
        state_dict.pop(prefix + QUANT_KEY, None)
        self.set_int8(weight, scale, None if bias is None else bias.clone())
        return None

    def extra_repr(self) -> str:
        mode = "int8" if self.is_int8 else "float"
        return f"{super().extra_repr()}, {mode}"


class Int8Ops(comfy.ops.manual_cast):
    """custom_operations for comfy.sd.load_diffusion_model_state_dict: Linears load int8 entries."""
    Linear = Int8Linear
