"""TurboT2AV (TurboDiffusion's 4-step LTX-2 audio-video student): loader and its empty AV latent."""
import logging

import folder_paths
from comfy_api.latest import io

from ..models import turbot2av
from ..patches.turbot2av_latent import empty_av_latent
from ..patches.turbot2av_loader import load_base_vae, load_turbot2av

CATEGORY = "TurboVideo/loaders"
STUDENT_FOLDER, BASE_FOLDER = "diffusion_models", "checkpoints"
STUDENT_EXTENSIONS = (".pth", ".pt", ".safetensors")


def student_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(STUDENT_FOLDER) if name.endswith(STUDENT_EXTENSIONS)]


def base_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(BASE_FOLDER) if name.endswith(".safetensors")]


class TurboT2AVLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboT2AVLoader", display_name="Load TurboT2AV Model", category=CATEGORY,
            description="Loads TurboDiffusion's TurboT2AV student (LTX-2 19B distilled to 4 audio-video steps) into "
                        "ComfyUI's own LTX-2 model, completed with the text connectors and config of the base "
                        "LTX-2 19B checkpoint; also gives that checkpoint's video VAE. Sample with Turbo rCM "
                        "Sigmas (turbot2av), 4 steps, no CFG, 24 fps.",
            inputs=[
                io.Combo.Input("student_name", options=student_files(),
                               tooltip=f"TurboT2AV's model.pth in models/{STUDENT_FOLDER} (read as plain tensors "
                                       "only), or the .safetensors tools/convert_turbot2av.py makes of it."),
                io.Combo.Input("base_checkpoint", options=base_files(),
                               tooltip=f"The LTX-2 19B checkpoint in models/{BASE_FOLDER} the student was "
                                       "distilled from (ltx-2-19b-dev*.safetensors): its text connectors and "
                                       "config complete the student (a converted .safetensors has them already); "
                                       "its video VAE is the second output."),
            ],
            outputs=[io.Model.Output(), io.Vae.Output(display_name="video_vae")],
        )

    @classmethod
    def validate_inputs(cls, student_name, base_checkpoint):
        students, bases = student_files(), base_files()
        if student_name not in students:
            return (f"student_name: '{student_name}' is not in models/{STUDENT_FOLDER}; put TurboT2AV's model.pth "
                    f"there and refresh (found: {students[:10]})")
        if base_checkpoint not in bases:
            return (f"base_checkpoint: '{base_checkpoint}' is not in models/{BASE_FOLDER}; put "
                    f"ltx-2-19b-dev.safetensors there and refresh (found: {bases[:10]})")
        return True

    @classmethod
    def execute(cls, student_name, base_checkpoint) -> io.NodeOutput:
        student_path = folder_paths.get_full_path_or_raise(STUDENT_FOLDER, student_name)
        base_path = folder_paths.get_full_path_or_raise(BASE_FOLDER, base_checkpoint)
        model, student = load_turbot2av(student_path, student_name, base_path, base_checkpoint)
        source = "converted file" if student.converted else f"keys '{student.prefix or '(flat)'}'"
        logging.info("TurboT2AVLoader: %s (%s) completed from %s", student_name, source, base_checkpoint)
        return io.NodeOutput(model, load_base_vae(base_path, base_checkpoint))


class TurboT2AVEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboT2AVEmptyLatent", display_name="TurboT2AV Empty Audio-Video Latent",
            category="TurboVideo/latent",
            description="An empty LTX-2 audio-video latent with TurboT2AV's lengths: video 1 + (frames - 1) / 8, "
                        "audio round(frames / fps * 25) steps (core's LTXV Empty Latent Audio rounds up: 127 "
                        "instead of 126 for 121 frames at 24 fps).",
            inputs=[
                io.Int.Input("width", default=768, min=32, max=8192, step=32, tooltip="Multiple of 32."),
                io.Int.Input("height", default=512, min=32, max=8192, step=32, tooltip="Multiple of 32."),
                io.Int.Input("length", default=121, min=1, max=8193, step=8, tooltip="Frames, 1 + 8k."),
                io.Int.Input("batch_size", default=1, min=1, max=64),
                io.Float.Input("frame_rate", default=turbot2av.FRAME_RATE, min=1.0, max=240.0, step=0.01,
                               tooltip="Sets the audio length only. TurboT2AV runs at 24: use the same value in "
                                       "LTXV Conditioning and the video file."),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, width, height, length, batch_size, frame_rate) -> io.NodeOutput:
        return io.NodeOutput(empty_av_latent(width, height, length, batch_size, frame_rate))


NODES = [TurboT2AVLoader, TurboT2AVEmptyLatent]
