"""An INT8 Linear that keeps ComfyUI's ops contract, and the ways onto a MODEL.

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
A Linear whose weight is not int8 behaves exactly like comfy's manual_cast Linear, which is what
Int8Ops (custom_operations for loading quantized checkpoints) relies on.
"""
from __future__ import annotations

import weakref

import comfy.model_management
import comfy.ops
import comfy.utils
import torch
import torch.nn.functional as F

from ..kernels import int8 as int8_kernels
from ..kernels.int8_reference import GRANULARITIES, expand_block_scale, is_block_scale
from ..models import int8_format
from . import families

LAYER_CHOICES = ("all", "attention", "feed_forward")


def _dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
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
        return _dequantize(weight, self.current_scale(), dtype)

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
        weight = _dequantize(self.weight.to(x.device), self.current_scale(), x.dtype)
        for fn in self.weight_function:
            weight = fn(weight)
        bias = None if self.bias is None else self.bias.to(x.device, x.dtype, copy=True)
        for fn in self.bias_function if bias is not None else ():
            bias = fn(bias)
        return weight, bias

    def _cpu_weight(self, scale: torch.Tensor):
        key = (self.weight.data_ptr(), scale.data_ptr())
        if self._cpu_cache is None or self._cpu_cache[0] != key:
            self._cpu_cache = (key, int8_kernels.pack_cpu_weight(self.weight, scale))
        return self._cpu_cache[1]

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
            destination[prefix + "weight_scale"] = self.current_scale()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        scale = state_dict.get(prefix + "weight_scale")
        if scale is None:
            return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                                 unexpected_keys, error_msgs)
        weight = state_dict[prefix + "weight"]
        bias = state_dict.get(prefix + "bias")
        if weight.dtype != torch.int8 or tuple(weight.shape) != (self.out_features, self.in_features):
            error_msgs.append(f"{prefix}weight: expected int8 [{self.out_features}, {self.in_features}] "
                              f"beside weight_scale; got {weight.dtype} {list(weight.shape)}")
            return None
        self.set_int8(weight, scale, None if bias is None else bias.clone())
        return None

    def extra_repr(self) -> str:
        mode = "int8" if self.is_int8 else "float"
        return f"{super().extra_repr()}, {mode}"


class Int8Ops(comfy.ops.manual_cast):
    """custom_operations for comfy.sd.load_diffusion_model_state_dict: Linears load int8 entries."""
    Linear = Int8Linear


def model_blocks(model) -> tuple[str, str]:
    """(blocks attribute, family name) of a MODEL whose family has an INT8 layer map, else a ValueError."""
    family = families.require(model, families.INT8)
    return family.blocks, family.name


def _wanted(path: str, layers: str) -> bool:
    parts = path.split(".")
    if layers == "attention":
        return any("attn" in p for p in parts)
    if layers == "feed_forward":
        return any(p in ("ff", "ffn") for p in parts)
    return True


def select_linears(model, layers: str = "all") -> list[str]:
    """Object-patch paths (diffusion_model.<blocks>.N....) of the Linears to quantize."""
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}; got {layers!r}")
    blocks, _ = model_blocks(model)
    root = model.get_model_object(f"diffusion_model.{blocks}")
    return [f"diffusion_model.{blocks}.{name}" for name, module in root.named_modules()
            if isinstance(module, torch.nn.Linear) and _wanted(name, layers)]


def quantize_model(model, layers: str = "all", granularity: str = "per_channel", backend: str = "auto"):
    """A clone of `model` whose chosen block Linears are Int8Linear object patches."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")
    paths = select_linears(model, layers)
    patched = model.clone()
    progress = comfy.utils.ProgressBar(len(paths))
    for path in paths:
        comfy.model_management.throw_exception_if_processing_interrupted()
        linear = patched.get_model_object(path)
        if isinstance(linear, Int8Linear) and linear.is_int8:
            raise ValueError(f"model: {path} is already INT8; connect the MODEL from the loader "
                             "instead of quantizing twice")
        patched.add_object_patch(path, Int8Linear.from_linear(linear, granularity, backend))
        progress.update(1)
    from .finite_guard import guard  # issue 18: NaN output stops sampling, naming this patch

    return guard(patched, f"INT8 layers ({granularity}, backend {backend})")


def quantized_state_dict(model) -> dict:
    """The diffusion model's state dict with the INT8 layers (and any LoRA patches) applied."""
    comfy.model_management.load_models_gpu([model], force_patch_weights=True, force_full_load=True)
    state = model.model.diffusion_model.state_dict()
    return {key: value.detach().to("cpu").contiguous() for key, value in state.items()}


def load_quantized(state_dict: dict, dtype: torch.dtype | None = None):
    """A MODEL from a state dict in TurboVideo's INT8 format (or TurboDiffusion's -quant layout)."""
    import comfy.sd

    if int8_format.is_turbodiffusion_quant(state_dict):
        state_dict = int8_format.from_turbodiffusion_quant(state_dict)
    if not int8_format.validate(state_dict):
        raise ValueError("the file holds no INT8 layers (no '.weight_scale' entries); load it with the "
                         "core UNETLoader, or quantize it with TurboQuantizeINT8 and TurboSaveQuantized")
    options = {"custom_operations": Int8Ops}
    if dtype is not None:
        options["dtype"] = dtype
    model = comfy.sd.load_diffusion_model_state_dict(state_dict, model_options=options)
    if model is None:
        raise ValueError("the INT8 file's model type was not recognised (expected an LTX-Video or Wan DiT)")
    return model


def _granularity_of(state_dict: dict) -> str:
    kinds = set()
    for prefix in int8_format.quantized_prefixes(state_dict):
        kinds.add("block128" if is_block_scale(state_dict[prefix + ".weight"],
                                               state_dict[prefix + int8_format.SCALE_SUFFIX]) else "per_channel")
    return kinds.pop() if len(kinds) == 1 else "mixed"


def save_quantized(model, path: str) -> int:
    """Write the MODEL's diffusion model in TurboVideo's INT8 format; returns the INT8 layer count."""
    state = quantized_state_dict(model)
    layers = int8_format.validate(state)
    if not layers:
        raise ValueError("model: has no INT8 layers; connect the MODEL from TurboQuantizeINT8")
    meta = int8_format.metadata(model.model.get_dtype(), _granularity_of(state))
    from ..models.checkpoint_files import atomic_target

    with atomic_target(path) as temp:  # a crash mid-save leaves no truncated model under the final name
        comfy.utils.save_torch_file(state, str(temp), metadata=meta)
    return len(layers)


def load_quantized_file(path: str):
    """A MODEL from a .safetensors in TurboVideo's INT8 format (float dtype from its metadata); the file is
    opened and checked by patches/model_files (issue 18)."""
    from .finite_guard import guard
    from .model_files import QUANTIZED_ROLE, load_model_file

    state, meta = load_model_file(path, QUANTIZED_ROLE)
    return guard(load_quantized(state, int8_format.compute_dtype(meta)), "INT8 layers (an INT8 file)")
