"""Attention backends (exact, INT8 Sage, SLA, SageSLA) and fused norms as MODEL -> MODEL nodes."""
from comfy_api.latest import io

from ..models.sla_weights import load_proj_l, read_proj_l_header
from ..patches.attention import BACKENDS, apply_attention_backend
from ..patches.fused_norms import apply_fused_norms
from .model_folders import ADAPTER_FOLDER, adapter_files, adapter_path

CATEGORY = "TurboVideo/speed"
NO_PROJ_L = "none"
SLA_BACKENDS = ("sla", "sagesla")


def topk_input() -> io.Float.Input:
    return io.Float.Input("topk", default=0.1, min=0.01, max=1.0, step=0.01,
                          tooltip="sla / sagesla: share of key blocks each query block attends to exactly "
                                  "(0.1 = 10%, TurboDiffusion's default; 0.15 recommended for quality; 1.0 = exact).")


class TurboAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboAttention", display_name="Turbo Attention", category=CATEGORY,
            description="Swaps the self-attention of an LTX-Video or Wan model for a faster kernel; "
                        "cross-attention stays exact. On CUDA the Triton kernels where they measure faster; "
                        "without them sage runs exact attention (faster and exact there) and sla runs "
                        "PyTorch over only the kept key blocks.",
            inputs=[
                io.Model.Input("model", tooltip="An LTX-Video or Wan model from a loader."),
                io.Combo.Input("backend", options=list(BACKENDS), default="sage",
                               tooltip="sdpa: exact attention. sage: INT8 Q/K, fp16 P.V (near-exact). "
                                       "sla: sparse (top-k blocks) + linear attention. sagesla: sla with INT8 Q/K. "
                                       "Head dims 64 and 128; anything else runs exact, with one warning."),
                topk_input(),
                io.Combo.Input("proj_l", options=[NO_PROJ_L, *adapter_files()], default=NO_PROJ_L, optional=True,
                               tooltip=f"sla / sagesla: trained proj_l weights (.safetensors in "
                                       f"models/{ADAPTER_FOLDER}, docs/attention.md). none: zero proj_l, "
                                       "the linear branch adds nothing."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, backend, topk, proj_l=NO_PROJ_L):
        if proj_l in (None, NO_PROJ_L):
            return True
        if backend not in SLA_BACKENDS:
            return "proj_l: only the sla and sagesla backends use proj_l weights; set proj_l to none or backend to sla"
        files = adapter_files()
        if proj_l not in files:
            return f"proj_l: '{proj_l}' is not in models/{ADAPTER_FOLDER}; pick one of {files[:20]} or refresh"
        try:
            read_proj_l_header(adapter_path(proj_l), proj_l)
        except ValueError as error:
            return f"proj_l: {error}"
        return True

    @classmethod
    def execute(cls, model, backend, topk, proj_l=NO_PROJ_L) -> io.NodeOutput:
        weights = None
        if proj_l not in (None, NO_PROJ_L):
            weights = load_proj_l(adapter_path(proj_l), proj_l)
        return io.NodeOutput(apply_attention_backend(model, backend, topk, weights, proj_l or NO_PROJ_L))


class TurboFusedNorms(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboFusedNorms", display_name="Turbo Fused Norms", category=CATEGORY,
            description="Runs the model's RMSNorm and LayerNorm modules as fused Triton kernels on CUDA where "
                        "they measure faster than PyTorch's own, PyTorch's own elsewhere: never slower than "
                        "without the node. Same results within float rounding.",
            inputs=[io.Model.Input("model", tooltip="An LTX-Video or Wan model (any model with norm modules).")],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        return io.NodeOutput(apply_fused_norms(model))


NODES = [TurboAttention, TurboFusedNorms]
