"""Turbo2K LR -> HR: the LR pass with feature capture, the fusion adapter, training-free latent guidance."""
from comfy_api.latest import io

from ..models.dit_bundle import FUSION
from ..models.fusion_blocks import load_fusion_adapter, read_fusion_header
from ..patches.dit_loader import FROM_MODEL, model_adapter
from ..patches.latent_guidance import guide_latent
from ..patches.lr_features import AUTO_BLOCKS, apply_lr_features, run_lr_pass
from ..patches.lrhr_sampler import lrhr_sample
from .model_folders import ADAPTER_FOLDER, adapter_files, adapter_path

CATEGORY = "TurboVideo/lr_hr"
LRFeatures = io.Custom("TURBO_LR_FEATURES")
TRAINING_FREE = "none (training-free latent guidance)"
BLOCKS_TOOLTIP = ("LR DiT blocks whose outputs are kept at the last LR step, comma-separated, or 'auto': Turbo2K's "
                  "0, 7, 14, 21 of 28 at the model's depth (LTX-Video 2B: 0, 7, 14, 21; LTX-2's 48 blocks: 0, 12, "
                  "24, 36). They must match the fusion adapter's lr_blocks.")


def parse_blocks(text: str) -> list[int] | str:
    if text.strip().lower() == AUTO_BLOCKS:
        return AUTO_BLOCKS
    try:
        blocks = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"blocks: {text!r} is not a comma-separated list of block indices "
                         "like '0, 7, 14, 21'") from None
    if not blocks:
        raise ValueError(f"blocks: give at least one block index, e.g. '0, 7, 14, 21', or '{AUTO_BLOCKS}'")
    return blocks


def check_adapter_file(adapter: str, allow_none: bool = False):
    if adapter == FROM_MODEL or (allow_none and adapter == TRAINING_FREE):
        return True
    if adapter not in adapter_files():
        return f"adapter: '{adapter}' is not in models/{ADAPTER_FOLDER}; put a fusion adapter there and refresh"
    try:
        read_fusion_header(adapter_path(adapter))
    except ValueError as error:
        return f"adapter: {error}"
    return True


def fusion_adapter(model, adapter: str):
    """(FusionAdapter, label): the chosen file's, or with FROM_MODEL the one TurboDiTLoader put on the MODEL."""
    if adapter == FROM_MODEL:
        return model_adapter(model, FUSION, "adapter")
    return load_fusion_adapter(adapter_path(adapter)), adapter


class TurboLRPass(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboLRPass", display_name="Turbo LR Pass (capture features)", category=CATEGORY,
            description="Samples the low-resolution pass like SamplerCustomAdvanced and keeps the chosen LTX-Video / "
                        "LTX-2 blocks' video hidden states of the last step for TurboApplyLRFeatures. No decoding.",
            inputs=[io.Noise.Input("noise"),
                    io.Guider.Input("guider", tooltip="A guider over an LTX-Video or LTX-2 model."),
                    io.Sampler.Input("sampler"), io.Sigmas.Input("sigmas"),
                    io.Latent.Input("latent_image", tooltip="The LR latent (e.g. EmptyLTXVLatentVideo at half size; "
                                                            "for LTX-2 also an audio-video latent)."),
                    io.String.Input("blocks", default=AUTO_BLOCKS, tooltip=BLOCKS_TOOLTIP)],
            outputs=[io.Latent.Output(display_name="lr_latent"), LRFeatures.Output(display_name="lr_features")],
        )

    @classmethod
    def execute(cls, noise, guider, sampler, sigmas, latent_image, blocks) -> io.NodeOutput:
        return io.NodeOutput(*run_lr_pass(noise, guider, sampler, sigmas, latent_image, parse_blocks(blocks)))


class TurboApplyLRFeatures(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboApplyLRFeatures", display_name="Turbo Apply LR Features", category=CATEGORY,
            description="Adds the fusion adapter's projection of the LR features to the HR model's blocks; "
                        "any sampler then drives the HR pass. An untrained (zero) adapter changes nothing.",
            inputs=[io.Model.Input("model", tooltip="The HR LTX-Video or LTX-2 model."),
                    LRFeatures.Input("lr_features"),
                    io.Combo.Input("adapter", options=adapter_files() + [FROM_MODEL],
                                   tooltip=f"A fusion adapter in models/{ADAPTER_FOLDER} (docs/lrhr.md), or "
                                           "the one TurboDiTLoader loaded with the model."),
                    io.Float.Input("strength", default=1.0, min=0.0, max=4.0, step=0.05,
                                   tooltip="Scales what the adapter adds; 0 turns it off.")],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, adapter):
        return check_adapter_file(adapter)

    @classmethod
    def execute(cls, model, lr_features, adapter, strength) -> io.NodeOutput:
        fusion, label = fusion_adapter(model, adapter)
        return io.NodeOutput(apply_lr_features(model, lr_features, fusion, strength, label))


class TurboLRLatentGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboLRLatentGuidance", display_name="Turbo LR Latent Guidance (training-free)",
            category=CATEGORY,
            description="Training-free LR -> HR (LTX-Video multi-scale style): upsample the LR latent, AdaIN it to "
                        "the LR statistics, re-noise it to the first HR sigma. Sample 'latent' over 'sigmas' with "
                        "SamplerCustomAdvanced and DisableNoise.",
            inputs=[io.Latent.Input("lr_latent"),
                    io.Sigmas.Input("sigmas", tooltip="HR schedule, e.g. ManualSigmas 0.9094, 0.725, 0.4219, 0.0."),
                    io.Int.Input("noise_seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True),
                    io.Int.Input("start_step", default=0, min=0, max=1000,
                                 tooltip="Drops this many steps from the front of sigmas; the HR pass starts at the "
                                         "sigma left first (must be below 1)."),
                    io.Float.Input("scale", default=2.0, min=1.0, max=4.0, step=0.25,
                                   tooltip="Spatial upscale when interpolating (a latent upscale model sets its own)."),
                    io.Float.Input("adain_factor", default=1.0, min=0.0, max=1.0, step=0.05,
                                   tooltip="1: match the LR latent's per-channel mean and std; 0: no AdaIN."),
                    io.LatentUpscaleModel.Input("upscale_model", optional=True,
                                                tooltip="LatentUpscaleModelLoader output; without it: trilinear."),
                    io.Vae.Input("vae", optional=True, tooltip="The LTX-Video / LTX-2 VAE; needed with "
                                                               "upscale_model.")],
            outputs=[io.Latent.Output(display_name="latent"), io.Latent.Output(display_name="guide_latent"),
                     io.Sigmas.Output(display_name="sigmas")],
        )

    @classmethod
    def execute(cls, lr_latent, sigmas, noise_seed, start_step, scale, adain_factor, upscale_model=None,
                vae=None) -> io.NodeOutput:
        return io.NodeOutput(*guide_latent(lr_latent, sigmas, noise_seed, start_step, scale, adain_factor,
                                           upscale_model, vae))


class TurboLRHRSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboLRHRSampler", display_name="Turbo LR -> HR Sampler", category=CATEGORY,
            description="LR pass, then the HR pass at 'scale' x the size. With a fusion adapter the HR model is "
                        "guided by the LR features (Turbo2K); with 'none' it runs the TRAINING-FREE latent guidance "
                        "(upsample + AdaIN + re-noise; hr_sigmas must then start below 1).",
            inputs=[io.Model.Input("model"), io.Conditioning.Input("positive"), io.Conditioning.Input("negative"),
                    io.Float.Input("cfg", default=3.0, min=0.0, max=30.0, step=0.1), io.Sampler.Input("sampler"),
                    io.Sigmas.Input("lr_sigmas"), io.Sigmas.Input("hr_sigmas"),
                    io.Latent.Input("lr_latent", tooltip="The empty LR latent; the HR latent is 'scale' x its size."),
                    io.Int.Input("noise_seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True),
                    io.Combo.Input("adapter", options=[TRAINING_FREE] + adapter_files() + [FROM_MODEL],
                                   default=TRAINING_FREE,
                                   tooltip=f"A fusion adapter in models/{ADAPTER_FOLDER}, the one TurboDiTLoader "
                                           "loaded with the model, or training-free mode."),
                    io.Float.Input("strength", default=1.0, min=0.0, max=4.0, step=0.05),
                    io.Float.Input("scale", default=2.0, min=1.0, max=4.0, step=0.25),
                    io.LatentUpscaleModel.Input("upscale_model", optional=True,
                                                tooltip="Training-free mode only: core's latent upscale model "
                                                        "(e.g. LTX-2's spatial upscaler x2) instead of trilinear; "
                                                        "it sets the scale itself."),
                    io.Vae.Input("vae", optional=True, tooltip="The model's VAE; needed with upscale_model.")],
            outputs=[io.Latent.Output(display_name="hr_latent"), io.Latent.Output(display_name="lr_latent")],
        )

    @classmethod
    def validate_inputs(cls, adapter):
        return check_adapter_file(adapter, allow_none=True)

    @classmethod
    def execute(cls, model, positive, negative, cfg, sampler, lr_sigmas, hr_sigmas, lr_latent, noise_seed,
                adapter, strength, scale, upscale_model=None, vae=None) -> io.NodeOutput:
        fusion, label = (None, adapter) if adapter == TRAINING_FREE else fusion_adapter(model, adapter)
        return io.NodeOutput(*lrhr_sample(model, positive, negative, cfg, sampler, lr_sigmas, hr_sigmas, lr_latent,
                                          noise_seed, fusion, label, strength, scale, upscale_model, vae))


NODES = [TurboLRPass, TurboApplyLRFeatures, TurboLRLatentGuidance, TurboLRHRSampler]
