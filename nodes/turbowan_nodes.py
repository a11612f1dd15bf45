"""TurboWanLoader: TurboDiffusion's public TurboWan checkpoints as a ComfyUI Wan MODEL."""
import logging

import folder_paths
from comfy_api.latest import io

from ..models.checkpoint_files import unreadable
from ..models.turbowan import file_role
from ..patches.attention import BACKENDS
from ..patches.turbowan_loader import load_turbowan
from .attention_nodes import topk_input

CATEGORY = "TurboVideo/loaders"
MODEL_FOLDER = "diffusion_models"
EXTENSIONS = (".pth", ".pt", ".safetensors")


def turbowan_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(MODEL_FOLDER) if name.endswith(EXTENSIONS)]


class TurboWanLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboWanLoader", display_name="Load TurboWan Model", category=CATEGORY,
            description="Loads TurboDiffusion's TurboWan2.1 T2V (1.3B, 14B) and TurboWan2.2 I2V A14B (high / low) "
                        "checkpoints, plain or -quant, .pth or .safetensors, into ComfyUI's own Wan model. "
                        "Sample with the rCM nodes, 1-4 steps, no CFG.",
            inputs=[
                io.Combo.Input("turbowan_name", options=turbowan_files(),
                               tooltip=f"A TurboWan file in models/{MODEL_FOLDER}. .pth files are read as plain "
                                       "tensors only; tools/convert_turbowan.py makes a faster .safetensors."),
                io.Combo.Input("attention", options=list(BACKENDS), default="sagesla",
                               tooltip="sagesla / sla: TurboDiffusion's sparse-linear attention with the file's "
                                       "proj_l weights (what the models were distilled with). sage: INT8 attention. "
                                       "sdpa: exact attention."),
                topk_input(),
                io.Boolean.Input("int8", default=False,
                                 tooltip="Quantize a plain file's block linears to W8A8 INT8 (128x128 blocks, as "
                                         "TurboDiffusion's -quant files). -quant files are always INT8."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, turbowan_name=None):
        if turbowan_name is None:
            return True
        files = turbowan_files()
        if turbowan_name not in files:
            return (f"turbowan_name: '{turbowan_name}' is not in models/{MODEL_FOLDER}; put the TurboWan .pth "
                    f"or .safetensors there and refresh (found: {files[:10]})")
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, turbowan_name)
        return unreadable(path, file_role("turbowan_name")) or True  # header / first bytes; tensors at run time

    @classmethod
    def execute(cls, turbowan_name, attention, topk, int8) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, turbowan_name)
        model, checkpoint = load_turbowan(path, turbowan_name, attention, topk, int8)
        logging.info("TurboWanLoader: %s (%s%s), attention %s", turbowan_name, checkpoint.release,
                     ", INT8 -quant" if checkpoint.quantized else "", attention)
        return io.NodeOutput(model)


NODES = [TurboWanLoader]
