"""Shortcut models: a step-size adapter from models/turbovideo added to an LTX-Video or Wan MODEL."""
from comfy_api.latest import io

from ..models.step_embedder import load_step_embedder, read_step_embedder_header
from ..patches.step_size import apply_step_embedder
from .model_folders import ADAPTER_FOLDER, adapter_files, adapter_path

CATEGORY = "TurboVideo/sampling"


class TurboShortcutModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboShortcutModel", display_name="Turbo Shortcut Model", category=CATEGORY,
            description="Adds a shortcut model's step-size embedding to the MODEL's time embedding. "
                        "TurboShortcutSampler tells the model the nearest trained step size each step; "
                        "with any other sampler the adapter adds nothing.",
            inputs=[
                io.Model.Input("model", tooltip="An LTX-Video or Wan model from a loader."),
                io.Combo.Input("adapter", options=adapter_files(),
                               tooltip=f"A step-size adapter (.safetensors) in models/{ADAPTER_FOLDER}; "
                                       "its width must match the model (docs/adapters.md)."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, adapter):
        """At queue time: the file exists in the adapter folder and is a step-size adapter."""
        files = adapter_files()
        if not files:
            return (f"models/{ADAPTER_FOLDER} holds no adapter files; put a step-size adapter "
                    "(.safetensors, docs/adapters.md) there and refresh the page")
        if adapter not in files:
            return f"'{adapter}' is not in models/{ADAPTER_FOLDER}; pick one of {files[:20]} or refresh"
        try:
            read_step_embedder_header(adapter_path(adapter))
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, model, adapter) -> io.NodeOutput:
        embedder, trained_step_sizes = load_step_embedder(adapter_path(adapter))
        return io.NodeOutput(apply_step_embedder(model, embedder, trained_step_sizes, adapter))


NODES = [TurboShortcutModel]
