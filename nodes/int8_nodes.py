"""W8A8 INT8 linears: quantize a MODEL's block Linears, save the result, load quantized files."""
import os

import folder_paths
from comfy_api.latest import io

from ..kernels.int8_reference import GRANULARITIES
from ..patches.int8 import files as int8_files
from ..patches.int8 import quantize as int8_quantize

CATEGORY = "TurboVideo/quantization"
MODEL_FOLDER = "diffusion_models"


class TurboQuantizeINT8(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboQuantizeINT8", display_name="Turbo Quantize INT8 (W8A8)", category=CATEGORY,
            description="Replaces the Linear layers of an LTX-Video or Wan model's transformer blocks by W8A8 "
                        "INT8 layers (INT8 weights, activations quantized on the fly). LoRA and offloading "
                        "keep working; on a ComfyUI with native INT8, per_channel layers are ComfyUI's own. "
                        "The float model stays in memory: save with TurboSaveQuantized and load with "
                        "TurboLoadQuantized (or, per_channel, ComfyUI's own UNETLoader) to halve model memory.",
            inputs=[
                io.Model.Input("model", tooltip="An LTX-Video or Wan model from a loader."),
                io.Combo.Input("layers", options=list(int8_quantize.LAYER_CHOICES), default="all",
                               tooltip="Which Linears inside the transformer blocks: all, attention "
                                       "projections only, or feed-forward only."),
                io.Combo.Input("granularity", options=list(GRANULARITIES), default="per_channel",
                               tooltip="per_channel: one scale per output channel, activations per token "
                                       "(most accurate). block128: TurboDiffusion's 128x128 blocks."),
                io.Combo.Input("backend", options=list(int8_quantize.BACKENDS), default="auto",
                               tooltip="auto: the fastest INT8 GEMM on the device, measured on first use "
                                       "(the pack's Triton on CUDA / oneDNN on x86 CPUs, or ComfyUI's own "
                                       "comfy-kitchen GEMM where it has native INT8). core: ComfyUI's own "
                                       "(per_channel, ComfyUI 0.27+)."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, layers, granularity, backend="auto") -> io.NodeOutput:
        return io.NodeOutput(int8_quantize.quantize_model(model, layers, granularity, backend))


class TurboSaveQuantized(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboSaveQuantized", display_name="Turbo Save Quantized Model", category=CATEGORY,
            description="Saves an INT8 MODEL (from TurboQuantizeINT8, LoRA patches baked in) as .safetensors "
                        "in ComfyUI's output folder (format: docs/int8.md). Move it to models/diffusion_models "
                        "and load it with TurboLoadQuantized; per_channel files also load with ComfyUI's own "
                        "UNETLoader on ComfyUI 0.27+, block128 files only with TurboVideo's loaders.",
            inputs=[
                io.Model.Input("model", tooltip="A MODEL from TurboQuantizeINT8."),
                io.String.Input("filename_prefix", default="diffusion_models/turbo_int8",
                                tooltip="Path under the output folder; a counter and .safetensors are added."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, filename_prefix) -> io.NodeOutput:
        output_dir = folder_paths.get_output_directory()
        folder, name, counter, _, _ = folder_paths.get_save_image_path(filename_prefix, output_dir)
        path = os.path.join(folder, f"{name}_{counter:05}_.safetensors")
        int8_files.save_quantized(model, path)
        return io.NodeOutput()


class TurboLoadQuantized(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboLoadQuantized", display_name="Turbo Load Quantized Model", category=CATEGORY,
            description="Loads an INT8 diffusion model from models/diffusion_models: saved by TurboSaveQuantized "
                        "or tools/quantize_int8.py, a ComfyUI-native INT8 file from another tool, or "
                        "TurboDiffusion's -quant layout converted to safetensors.",
            inputs=[io.Combo.Input("unet_name", options=folder_paths.get_filename_list(MODEL_FOLDER),
                                   tooltip="An INT8 .safetensors file in models/diffusion_models.")],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, unet_name):
        if unet_name not in folder_paths.get_filename_list(MODEL_FOLDER):
            return f"'{unet_name}' is not in models/{MODEL_FOLDER}; put the INT8 file there and refresh"
        return True

    @classmethod
    def execute(cls, unet_name) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, unet_name)
        return io.NodeOutput(int8_files.load_quantized_file(path))


NODES = [TurboQuantizeINT8, TurboSaveQuantized, TurboLoadQuantized]
