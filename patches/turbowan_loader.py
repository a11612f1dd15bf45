"""TurboWan checkpoints into ComfyUI's own Wan MODEL, with the pack's INT8 layers and SLA backend.

The converted state dict goes through comfy.sd's own loader, so the result is the core Wan model
(detection, model sampling, LoRA keys, offloading all as for a native file); `-quant` files load
their int8 linears into Int8Linear through custom_operations; SLA's proj_l weights go to the
attention backend with TurboDiffusion's linear-branch convention (over all keys).
"""
import logging

import comfy.sd

from ..models import turbowan
from .attention import apply_attention_backend
from .int8 import files as int8_files
from .int8 import quantize as int8_quantize

TURBODIFFUSION_LINEAR_KEYS = "all"


def _plain_model(checkpoint: turbowan.TurboWanCheckpoint, name: str):
    model = comfy.sd.load_diffusion_model_state_dict(checkpoint.native)
    if model is None:
        raise turbowan.TurboWanError(f"'{name}': ComfyUI did not recognise the converted Wan model")
    return model


def load_turbowan(path, name: str, attention: str = "sagesla", topk: float = 0.1, int8: bool = False):
    """MODEL from a TurboWan file; returns (model, checkpoint) so the caller can report what it loaded."""
    checkpoint = turbowan.convert(turbowan.read_state_dict(path), name)
    if checkpoint.quantized:
        model = int8_files.load_quantized(checkpoint.native)
    else:
        model = _plain_model(checkpoint, name)
        if int8:
            model = int8_quantize.quantize_model(model, "all", "block128")
    if attention in ("sla", "sagesla") and not checkpoint.proj_l:
        logging.warning("TurboWanLoader: '%s' has no SLA proj_l weights; %s runs with a zero proj_l "
                        "(sparse branch only)", name, attention)
    if attention != "sdpa":
        model = apply_attention_backend(model, attention, topk, checkpoint.proj_l or None, name,
                                        linear_keys=TURBODIFFUSION_LINEAR_KEYS)
    return model, checkpoint
