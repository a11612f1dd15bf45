"""TurboDiTLoader: an LTX-Video (student) DiT with the pack's adapters, embedded in the file or beside it."""
import logging

import folder_paths
from comfy_api.latest import io

from ..models.checkpoint_files import unreadable
from ..models.dit_bundle import FUSION, STEP, VSR
from ..models.fusion_blocks import read_fusion_header
from ..models.step_embedder import read_step_embedder_header
from ..models.vsr_conditioner import read_vsr_conditioner_header
from ..patches.dit_loader import (
    DIT_ROLE,
    EMBEDDED,
    INPUT_NAMES,
    INT8_CHOICES,
    NONE,
    WEIGHT_DTYPES,
    AdapterSource,
    load_dit,
)
from .model_folders import ADAPTER_FOLDER, adapter_files, adapter_path

CATEGORY = "TurboVideo/loaders"
MODEL_FOLDER = "diffusion_models"
EXTENSIONS = (".safetensors", ".sft")
HEADER_READERS = {STEP: read_step_embedder_header, FUSION: read_fusion_header, VSR: read_vsr_conditioner_header}
ADAPTER_TOOLTIPS = {
    STEP: "Step-size embedder for TurboShortcutSampler, applied here",
    FUSION: "Fusion adapter for TurboApplyLRFeatures / TurboLRHRSampler (their adapter 'from model')",
    VSR: "VSR conditioner for TurboVSRUpscale (its conditioner 'from model')",
}


def dit_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(MODEL_FOLDER) if name.lower().endswith(EXTENSIONS)]


def _adapter_input(kind: str):
    return io.Combo.Input(INPUT_NAMES[kind], options=[EMBEDDED, NONE] + adapter_files(), default=EMBEDDED,
                          tooltip=f"{ADAPTER_TOOLTIPS[kind]}. '{EMBEDDED}': the one stored in the DiT file, if any; "
                                  f"'{NONE}': ignore it; or a file in models/{ADAPTER_FOLDER} (docs/adapters.md).")


def _check_adapter_choice(kind: str, choice: str):
    if choice in (None, EMBEDDED, NONE):
        return True
    if choice not in adapter_files():
        return f"{INPUT_NAMES[kind]}: '{choice}' is not in models/{ADAPTER_FOLDER}; put the file there and refresh"
    try:
        HEADER_READERS[kind](adapter_path(choice), INPUT_NAMES[kind])
    except ValueError as error:
        return str(error)
    return True


def _check_dit_file(unet_name: str):
    if unet_name not in dit_files():
        return (f"unet_name: '{unet_name}' is not a .safetensors file in models/{MODEL_FOLDER}; put the DiT "
                "there and refresh")
    # the header is read now; the weights are checked when the node runs
    return unreadable(folder_paths.get_full_path_or_raise(MODEL_FOLDER, unet_name), DIT_ROLE) or True


class TurboDiTLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboDiTLoader", display_name="Load Turbo DiT (LTX-Video + adapters)", category=CATEGORY,
            description="Loads an LTX-Video DiT (e.g. a Turbo2K / TurboVSR student) from models/diffusion_models "
                        "into ComfyUI's own LTX-Video MODEL, with the TurboVideo adapters stored in the same file "
                        "(save_dit_bundle) or chosen from models/turbovideo. The step-size embedder is applied; "
                        "the fusion adapter and VSR conditioner travel on the MODEL for the nodes set to "
                        "'from model'.",
            inputs=[
                io.Combo.Input("unet_name", options=dit_files(),
                               tooltip=f"An LTX-Video DiT .safetensors in models/{MODEL_FOLDER}: plain, a TurboVideo "
                                       "bundle with adapters, or an INT8 file from TurboSaveQuantized."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="Storage dtype of the DiT weights; default = ComfyUI's choice for the device."),
                io.Combo.Input("int8", options=list(INT8_CHOICES), default="off",
                               tooltip="Quantize the block Linears to W8A8 INT8 (per_channel: most accurate; "
                                       "block128: TurboDiffusion's). Files already in the INT8 format load as INT8."),
                _adapter_input(STEP), _adapter_input(FUSION), _adapter_input(VSR),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, unet_name=None, step_embedder=EMBEDDED, fusion_adapter=EMBEDDED,
                        vsr_conditioner=EMBEDDED):
        checked = True if unet_name is None else _check_dit_file(unet_name)
        if checked is not True:
            return checked
        for kind, choice in ((STEP, step_embedder), (FUSION, fusion_adapter), (VSR, vsr_conditioner)):
            checked = _check_adapter_choice(kind, choice)
            if checked is not True:
                return checked
        return True

    @classmethod
    def execute(cls, unet_name, weight_dtype, int8, step_embedder, fusion_adapter, vsr_conditioner) -> io.NodeOutput:
        choices = {STEP: step_embedder, FUSION: fusion_adapter, VSR: vsr_conditioner}
        sources = {kind: AdapterSource(choice, None if choice in (EMBEDDED, NONE) else adapter_path(choice))
                   for kind, choice in choices.items()}
        path = folder_paths.get_full_path_or_raise(MODEL_FOLDER, unet_name)
        model, used = load_dit(path, unet_name, weight_dtype, int8, sources)
        logging.info("TurboDiTLoader: %s, adapters %s", unet_name, used or "none")
        return io.NodeOutput(model)


NODES = [TurboDiTLoader]
