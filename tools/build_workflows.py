"""Builds the example workflows in workflows/ from the graphs below, with the real host's node info.

Run with the OLDEST supported ComfyUI's Python (OLDEST_COMFYUI; newer frontends load its files and give
widgets that core added since their defaults): `COMFYUI_PATH=/path/to/ComfyUI-0.8.0 python tools/build_workflows.py`.
A workflow on core nodes that ComfyUI lacks (NEEDS_CORE_NODES) is built on the oldest ComfyUI that has them
(BUILT_ON): run the script again with that one (`COMFYUI_PATH=/path/to/ComfyUI-0.29.0`); each run writes only
the workflows built on its version.
Each graph names the model files a user downloads (README: which file goes in which folder).

Adding a workflow: a function (node_info) -> Workflow below, one line in WORKFLOWS, run this script, then give
every model or input file it names a tiny stand-in in tests/host/workflow_files.py (the end-to-end test runs
every committed workflow and says which file has none).
"""
import pathlib
import sys
import tempfile

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "tests"))
sys.path.insert(0, str(PACK_ROOT / "tools"))

from workflow_format import MUTED, Workflow, write  # noqa: E402

LTXV_CHECKPOINT = "ltxv-2b-0.9.8-distilled.safetensors"
T5_ENCODER = "t5xxl_fp16.safetensors"
STEP_ADAPTER = "ltxv_2b_step_size_embedder.safetensors"  # trained with training/ (docs/adapters.md)
PROMPT = ("A red fox trots through fresh snow at dawn, its breath steaming, soft golden light, "
          "shallow depth of field, the camera tracks alongside at ground level.")
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
UMT5_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
TURBOWAN_T2V = "TurboWan2.1-T2V-1.3B-480P.pth"
TURBOWAN_I2V = "TurboWan2.2-I2V-A14B-{}-720P-quant.pth"
WAN_FPS = 16.0
TURBOT2AV_STUDENT = "TurboT2AV.pth"  # the released checkpoints/turbot2av_main/model.pth, renamed
LTX2_CHECKPOINT = "ltx-2-19b-dev.safetensors"
GEMMA_ENCODER = "gemma_3_12B_it_fp4_mixed.safetensors"
T2AV_PROMPT = ("A street musician plays an upbeat melody on an acoustic guitar in a sunlit plaza at dusk, "
               "pigeons flutter past, people clap along, warm light, the camera slowly pushes in.")
OLDEST_COMFYUI = "0.8.0"  # the lower bound of [tool.comfy] requires-comfyui in pyproject.toml


def node_info(host) -> dict:
    from comfy_api.internal import _ComfyNodeInternal

    info = {}
    for name, cls in host.nodes.NODE_CLASS_MAPPINGS.items():
        if issubclass(cls, _ComfyNodeInternal):
            info[name] = cls.GET_NODE_INFO_V1()
            continue
        inputs = cls.INPUT_TYPES()
        info[name] = {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
                      "output": list(cls.RETURN_TYPES),
                      "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))}
    return info


def ltxv_text_to_video_front(w: Workflow, width=768, height=512, frames=97):
    """Checkpoint, T5 prompt encoding with LTX frame rate, empty latent: the shared front half."""
    ckpt = w.add("CheckpointLoaderSimple", ckpt_name=LTXV_CHECKPOINT)
    clip = w.add("CLIPLoader", clip_name=T5_ENCODER, type="ltxv")
    positive = w.add("CLIPTextEncode", title="Prompt", text=PROMPT, clip=(clip, 0))
    negative = w.add("CLIPTextEncode", title="Negative prompt", text=NEGATIVE, clip=(clip, 0))
    cond = w.add("LTXVConditioning", positive=(positive, 0), negative=(negative, 0), frame_rate=25.0)
    latent = w.add("EmptyLTXVLatentVideo", width=width, height=height, length=frames, batch_size=1)
    return ckpt, cond, latent


def ltxv_save_video(w: Workflow, ckpt, samples, prefix):
    decoded = w.add("VAEDecode", samples=samples, vae=(ckpt, 2))
    video = w.add("CreateVideo", images=(decoded, 0), fps=25.0)
    w.add("SaveVideo", video=(video, 0), filename_prefix=f"video/{prefix}", format="auto", codec="auto")


def sample(w: Workflow, latent, guider, sampler, sigmas):
    noise = w.add("RandomNoise", noise_seed=42)
    return w.add("SamplerCustomAdvanced", noise=(noise, 0), guider=(guider, 0), sampler=(sampler, 0),
                 sigmas=(sigmas, 0), latent_image=(latent, 0))


def sample_and_save(w: Workflow, ckpt, latent, guider, sampler, sigmas, prefix) -> Workflow:
    ltxv_save_video(w, ckpt, (sample(w, latent, guider, sampler, sigmas), 0), prefix)
    return w


def ltxv_rcm(info) -> Workflow:
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    guider = w.add("BasicGuider", model=(ckpt, 0), conditioning=(cond, 0))
    sampler = w.add("TurboRCMSampler", mode="sde")
    sigmas = w.add("TurboRCMSigmas", steps=4, sigma_max=80.0, mid_timesteps="default")
    return sample_and_save(w, ckpt, latent, guider, sampler, sigmas, "turbo_rcm")


def token_shift_euler_and_save(w: Workflow, ckpt, model, cond, latent, prefix) -> Workflow:
    """CFG 3 Euler over the LTX token-shift schedule, 20 steps: the back half of a plain LTX graph."""
    guider = w.add("CFGGuider", model=model, positive=(cond, 0), negative=(cond, 1), cfg=3.0)
    sampler = w.add("KSamplerSelect", sampler_name="euler")
    sigmas = w.add("TurboLTXShiftSigmas", latent=(latent, 0), steps=20)
    return sample_and_save(w, ckpt, latent, guider, sampler, sigmas, prefix)


def ltxv_token_shift(info) -> Workflow:
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    return token_shift_euler_and_save(w, ckpt, (ckpt, 0), cond, latent, "turbo_token_shift")


def ltxv_shortcut(info) -> Workflow:
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    model = w.add("TurboShortcutModel", model=(ckpt, 0), adapter=STEP_ADAPTER)
    guider = w.add("BasicGuider", model=(model, 0), conditioning=(cond, 0))
    sampler = w.add("TurboShortcutSampler")
    sigmas = w.add("TurboShortcutSigmas", steps=4, shift_mode="from latent size", shift=1.0, latent=(latent, 0))
    return sample_and_save(w, ckpt, latent, guider, sampler, sigmas, "turbo_shortcut")


def ltxv_int8_sage(info) -> Workflow:
    """The speed nodes on a stock LTX-Video checkpoint: W8A8 INT8 linears, fused norms, INT8 attention."""
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    quantized = w.add("TurboQuantizeINT8", model=(ckpt, 0), layers="all", granularity="per_channel", backend="auto")
    fused = w.add("TurboFusedNorms", model=(quantized, 0))
    model = w.add("TurboAttention", model=(fused, 0), backend="sage", topk=0.1, proj_l="none")
    return token_shift_euler_and_save(w, ckpt, (model, 0), cond, latent, "turbo_int8_sage")


def ltxv_quantize_and_save(info) -> Workflow:
    """Quantize once and save: TurboLoadQuantized then loads the INT8 file at half the model memory."""
    w = Workflow(info)
    ckpt = w.add("CheckpointLoaderSimple", ckpt_name=LTXV_CHECKPOINT)
    quantized = w.add("TurboQuantizeINT8", model=(ckpt, 0), layers="all", granularity="per_channel", backend="auto")
    w.add("TurboSaveQuantized", model=(quantized, 0), filename_prefix="diffusion_models/ltxv_2b_int8")
    return w


def stream_decode_and_save(w: Workflow, vae_output, samples, prefix, fps):
    """Chunked decode straight into a video file: memory stays flat however long the video is."""
    video = w.add("TurboVAEDecodeToVideo", samples=samples, vae=vae_output, frame_rate=fps, crf=19,
                  memory_budget_mb=0, chunk_frames=0, chunk_overlap=24, tile_size=0, tile_overlap=64)
    w.add("SaveVideo", video=(video, 0), filename_prefix=f"video/{prefix}", format="auto", codec="auto")


def ltxv_long_streaming(info) -> Workflow:
    """A 10 s LTX-Video clip decoded chunk by chunk into the video file (no full-length IMAGE batch)."""
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w, frames=257)
    guider = w.add("BasicGuider", model=(ckpt, 0), conditioning=(cond, 0))
    sampler = w.add("KSamplerSelect", sampler_name="euler")
    sigmas = w.add("TurboLTXShiftSigmas", latent=(latent, 0), steps=8)
    samples = sample(w, latent, guider, sampler, sigmas)
    stream_decode_and_save(w, (ckpt, 2), (samples, 0), "turbo_long_streaming", 25.0)
    return w


FUSION_ADAPTER = "ltxv_2b_fusion_blocks.safetensors"  # trained with training/ (docs/lrhr.md)
TRAINING_FREE_LRHR = "none (training-free latent guidance)"
DISTILLED_LR_SIGMAS = "1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725, 0.4219, 0.0"
DISTILLED_HR_SIGMAS = "0.9094, 0.725, 0.4219, 0.0"


def ltxv_lr_to_hr(info, adapter: str) -> Workflow:
    """Turbo2K's two stages in one node: LR pass, its final-step features (or latent) guide the 2x HR pass."""
    w = Workflow(info)
    ckpt, cond, lr_latent = ltxv_text_to_video_front(w, width=640, height=352, frames=121)
    sampler = w.add("KSamplerSelect", sampler_name="euler")
    lr_sigmas = w.add("ManualSigmas", title="LR sigmas", sigmas=DISTILLED_LR_SIGMAS)
    hr_sigmas = w.add("ManualSigmas", title="HR sigmas", sigmas=DISTILLED_HR_SIGMAS)
    lrhr = w.add("TurboLRHRSampler", model=(ckpt, 0), positive=(cond, 0), negative=(cond, 1), cfg=1.0,
                 sampler=(sampler, 0), lr_sigmas=(lr_sigmas, 0), hr_sigmas=(hr_sigmas, 0), lr_latent=(lr_latent, 0),
                 noise_seed=42, adapter=adapter, strength=1.0, scale=2.0)
    stream_decode_and_save(w, (ckpt, 2), (lrhr, 0), "turbo2k_lr_to_hr", 25.0)
    return w


VSR_CONDITIONER = "ltxv_2b_vsr_conditioner.safetensors"  # trained with training/ (docs/vsr.md)
TRAINING_FREE_VSR = "none (training-free SDEdit)"


def ltxv_vsr(info, conditioner: str, strength: float, streamed: bool) -> Workflow:
    """A low-res video upscaled 2x with LTX-Video: factorized (first frame first), auto tiles in latent space,
    chunked VAE, wavelet colour fix; `streamed` decodes straight into the MP4 (TurboVSRUpscaleToVideo)."""
    w = Workflow(info)
    video = w.add("LoadVideo", title="Low-resolution video", file="low_res.mp4")
    parts = w.add("GetVideoComponents", video=(video, 0))
    ckpt = w.add("CheckpointLoaderSimple", ckpt_name=LTXV_CHECKPOINT)
    clip = w.add("CLIPLoader", clip_name=T5_ENCODER, type="ltxv")
    positive = w.add("CLIPTextEncode", title="Prompt", text="high quality, detailed, sharp", clip=(clip, 0))
    options = dict(model=(ckpt, 0), vae=(ckpt, 2), images=(parts, 0), scale=2.0, steps=4, strength=strength,
                   seed=0, resize_method="lanczos", color_correction="wavelet", factorized=True,
                   vsr_conditioner=conditioner, cfg=1.0, tile_size=0, memory_budget_mb=0, tile_overlap=4,
                   segment_length=0, segment_overlap=2, weights="cosine", tile_batch=1, positive=(positive, 0))
    if streamed:
        upscaled = w.add("TurboVSRUpscaleToVideo", frame_rate=24.0, crf=19, **options)
        w.add("SaveVideo", video=(upscaled, 0), filename_prefix="video/turbovsr", format="auto", codec="auto")
    else:
        upscaled = w.add("TurboVSRUpscale", **options)
        out = w.add("CreateVideo", images=(upscaled, 0), fps=24.0)
        w.add("SaveVideo", video=(out, 0), filename_prefix="video/turbovsr", format="auto", codec="auto")
    w.add("PreviewImage", title="Tile layout", images=(upscaled, 1))
    return w


def ltx2_vsr(info) -> Workflow:
    """A low-res video upscaled 2x with LTX-2 (video-only), training-free: factorized, auto tiles, no prompt
    (the family's zero caption token: no 12B text encoder to load), decoded straight into the MP4."""
    w = Workflow(info)
    video = w.add("LoadVideo", title="Low-resolution video", file="low_res.mp4")
    parts = w.add("GetVideoComponents", video=(video, 0))
    ckpt = w.add("CheckpointLoaderSimple", ckpt_name=LTX2_CHECKPOINT)
    upscaled = w.add("TurboVSRUpscaleToVideo", model=(ckpt, 0), vae=(ckpt, 2), images=(parts, 0), scale=2.0, steps=4,
                     strength=0.4, seed=0, resize_method="lanczos", color_correction="wavelet", factorized=True,
                     vsr_conditioner=TRAINING_FREE_VSR, cfg=1.0, tile_size=0, memory_budget_mb=0, tile_overlap=4,
                     segment_length=0, segment_overlap=2, weights="cosine", tile_batch=1, frame_rate=24.0, crf=19)
    w.add("SaveVideo", video=(upscaled, 0), filename_prefix="video/turbovsr_ltx2", format="auto", codec="auto")
    w.add("PreviewImage", title="Tile layout", images=(upscaled, 1))
    return w


LTX2_UPSCALER = "ltx-2-spatial-upscaler-x2-1.0.safetensors"  # Lightricks' LTX-2 latent upsampler x2
LTX2_HR_SIGMAS = "0.909375, 0.725, 0.421875, 0.0"  # LTX-2's own stage-2 (refinement) sigmas


def ltx2_lr_to_hr(info) -> Workflow:
    """Turbo2K's two stages on LTX-2 (video-only), training-free: the LR pass (LTX-2's scheduler, 20 steps, CFG
    3), its final latent upsampled x2 by LTX-2's own latent upsampler, AdaIN and re-noise, a 3-step HR pass,
    streamed into the MP4. With a fusion adapter trained for LTX-2 (training/) set `adapter` to it."""
    w = Workflow(info)
    ckpt = w.add("CheckpointLoaderSimple", ckpt_name=LTX2_CHECKPOINT)
    clip = w.add("LTXAVTextEncoderLoader", text_encoder=GEMMA_ENCODER, ckpt_name=LTX2_CHECKPOINT)
    positive = w.add("CLIPTextEncode", title="Prompt", text=PROMPT, clip=(clip, 0))
    negative = w.add("CLIPTextEncode", title="Negative prompt", text=NEGATIVE, clip=(clip, 0))
    cond = w.add("LTXVConditioning", positive=(positive, 0), negative=(negative, 0), frame_rate=24.0)
    lr_latent = w.add("EmptyLTXVLatentVideo", width=640, height=352, length=121, batch_size=1)
    sampler = w.add("KSamplerSelect", sampler_name="euler")
    lr_sigmas = w.add("LTXVScheduler", title="LR sigmas", steps=20, max_shift=2.05, base_shift=0.95, stretch=True,
                      terminal=0.1, latent=(lr_latent, 0))
    hr_sigmas = w.add("ManualSigmas", title="HR sigmas", sigmas=LTX2_HR_SIGMAS)
    upscaler = w.add("LatentUpscaleModelLoader", model_name=LTX2_UPSCALER)
    lrhr = w.add("TurboLRHRSampler", model=(ckpt, 0), positive=(cond, 0), negative=(cond, 1), cfg=3.0,
                 sampler=(sampler, 0), lr_sigmas=(lr_sigmas, 0), hr_sigmas=(hr_sigmas, 0), lr_latent=(lr_latent, 0),
                 noise_seed=42, adapter=TRAINING_FREE_LRHR, strength=1.0, scale=2.0, upscale_model=(upscaler, 0),
                 vae=(ckpt, 2))
    stream_decode_and_save(w, (ckpt, 2), (lrhr, 0), "turbo2k_ltx2_lr_to_hr", 24.0)
    return w


STUDENT_BUNDLE = "turbo2k_student_ltxv_2b_bundle.safetensors"  # DiT + adapters (save_dit_bundle, docs/adapters.md)


def ltxv_lr_to_hr_student_tiled(info) -> Workflow:
    """Turbo2K from building blocks: a student DiT with its embedded fusion adapter, the LR pass capturing
    final-step features, the HR model fused and tiled, any sampler for the HR pass, streaming decode."""
    w = Workflow(info)
    ckpt, cond, lr_latent = ltxv_text_to_video_front(w, width=640, height=352, frames=121)
    ckpt.title = "LTX-Video checkpoint (its VAE)"
    student = w.add("TurboDiTLoader", unet_name=STUDENT_BUNDLE, weight_dtype="default", int8="off",
                    step_embedder="embedded", fusion_adapter="embedded", vsr_conditioner="embedded")
    sampler = w.add("KSamplerSelect", sampler_name="euler")
    lr_sigmas = w.add("ManualSigmas", title="LR sigmas", sigmas=DISTILLED_LR_SIGMAS)
    hr_sigmas = w.add("ManualSigmas", title="HR sigmas", sigmas=DISTILLED_HR_SIGMAS)
    lr_guider = w.add("CFGGuider", model=(student, 0), positive=(cond, 0), negative=(cond, 1), cfg=1.0)
    noise = w.add("RandomNoise", noise_seed=42)
    lr_pass = w.add("TurboLRPass", noise=(noise, 0), guider=(lr_guider, 0), sampler=(sampler, 0),
                    sigmas=(lr_sigmas, 0), latent_image=(lr_latent, 0), blocks="0, 7, 14, 21")
    fused = w.add("TurboApplyLRFeatures", model=(student, 0), lr_features=(lr_pass, 1),
                  adapter="from model (TurboDiTLoader)", strength=1.0)
    tiled = w.add("TurboTiledModel", model=(fused, 0), tile_size=0, memory_budget_mb=0, tile_overlap=8,
                  segment_length=0, segment_overlap=2, weights="cosine", tile_batch=1)
    hr_guider = w.add("CFGGuider", model=(tiled, 0), positive=(cond, 0), negative=(cond, 1), cfg=1.0)
    hr_latent = w.add("EmptyLTXVLatentVideo", title="HR latent (2x)", width=1280, height=704, length=121,
                      batch_size=1)
    hr = w.add("SamplerCustomAdvanced", noise=(noise, 0), guider=(hr_guider, 0), sampler=(sampler, 0),
               sigmas=(hr_sigmas, 0), latent_image=(hr_latent, 0))
    stream_decode_and_save(w, (ckpt, 2), (hr, 0), "turbo2k_student_tiled", 25.0)
    return w


SEEDVR2_DIT = "seedvr2_3b_int8_convrot.safetensors"  # core's SeedVR2 template files (Comfy-Org/SeedVR2)
SEEDVR2_VAE = "seedvr2_ema_vae_fp16.safetensors"
SEEDVR2_COLOUR_FIX = "wavelet"  # tests/host/test_seedvr2_tiled_host.py: keeps tiles as close to untiled as any


def seedvr2_tiled_upscale(info) -> Workflow:
    """Core's SeedVR2 2x video upscale with flat memory: chunked encode, the DiT through TurboTiledModel (auto
    tile on SeedVR2's attention-window grid, segments of 32 latent frames), the decode streamed into the MP4.
    Core's crop and colour fix (SeedVR2PostProcessing) sit on a second, muted branch that decodes to IMAGE."""
    w = Workflow(info)
    video = w.add("LoadVideo", title="Low-resolution video", file="low_res.mp4")
    parts = w.add("GetVideoComponents", video=(video, 0))
    resized = w.add("ImageScaleBy", image=(parts, 0), upscale_method="lanczos", scale_by=2.0)
    padded = w.add("SeedVR2Preprocess", resized_images=(resized, 0))
    unet = w.add("UNETLoader", unet_name=SEEDVR2_DIT, weight_dtype="default")
    vae = w.add("VAELoader", vae_name=SEEDVR2_VAE)
    chunks = dict(memory_budget_mb=0, chunk_frames=0, chunk_overlap=0, tile_size=0, tile_overlap=64)
    latent = w.add("TurboVAEEncode", pixels=(padded, 0), vae=(vae, 0), frame_count="pad", **chunks)
    cond = w.add("SeedVR2Conditioning", model=(unet, 0), vae_conditioning=(latent, 0))
    tiled = w.add("TurboTiledModel", model=(unet, 0), tile_size=0, memory_budget_mb=0, tile_overlap=8,
                  segment_length=32, segment_overlap=8, weights="cosine", tile_batch=1)
    samples = w.add("KSampler", model=(tiled, 0), seed=42, steps=1, cfg=1.0, sampler_name="euler",
                    scheduler="simple", positive=(cond, 0), negative=(cond, 1), latent_image=(latent, 0), denoise=1.0)
    streamed = w.add("TurboVAEDecodeToVideo", samples=(samples, 0), vae=(vae, 0), frame_rate=24.0, crf=19, **chunks)
    w.add("SaveVideo", video=(streamed, 0), filename_prefix="video/seedvr2_tiled", format="auto", codec="auto")
    images = w.add("TurboVAEDecode", title="Decode to IMAGE (enable for core's crop + colour fix)",
                   samples=(samples, 0), vae=(vae, 0), **chunks)
    fixed = w.add("SeedVR2PostProcessing", images=(images, 0), original_resized_images=(resized, 0),
                  color_correction_method=SEEDVR2_COLOUR_FIX)
    out = w.add("CreateVideo", images=(fixed, 0), fps=24.0)
    saved = w.add("SaveVideo", video=(out, 0), filename_prefix="video/seedvr2_tiled_colour_fixed", format="auto",
                  codec="auto")
    for node in (images, fixed, out, saved):
        node.mode = MUTED
    return w


# workflows that need core nodes a host may lack: built and tested only where the host has them
NEEDS_CORE_NODES = {"seedvr2_tiled_upscale_to_video.json": ("SeedVR2Conditioning", "SeedVR2Preprocess",
                                                            "SeedVR2PostProcessing")}


# the ComfyUI a workflow is built on where it is not OLDEST_COMFYUI: the oldest with the core nodes it needs
BUILT_ON = {"seedvr2_tiled_upscale_to_video.json": "0.29.0"}


def built_on(name: str) -> str:
    return BUILT_ON.get(name, OLDEST_COMFYUI)


def lacking(name: str, node_types) -> list[str]:
    """The core nodes workflow `name` needs that `node_types` (a host's registered types) does not have."""
    return [node for node in NEEDS_CORE_NODES.get(name, ()) if node not in node_types]


def wan_save_video(w: Workflow, vae, samples, prefix):
    stream_decode_and_save(w, (vae, 0), samples, prefix, WAN_FPS)


def turbowan_t2v(info) -> Workflow:
    """TurboWan2.1 T2V 1.3B at 480p: SLA + rCM 4 steps, one forward per step (no CFG)."""
    w = Workflow(info)
    model = w.add("TurboWanLoader", turbowan_name=TURBOWAN_T2V, attention="sagesla", topk=0.1, int8=False)
    clip = w.add("CLIPLoader", clip_name=UMT5_ENCODER, type="wan")
    vae = w.add("VAELoader", vae_name=WAN_VAE)
    positive = w.add("CLIPTextEncode", title="Prompt", text=PROMPT, clip=(clip, 0))
    latent = w.add("EmptyHunyuanLatentVideo", width=832, height=480, length=81, batch_size=1)
    guider = w.add("BasicGuider", model=(model, 0), conditioning=(positive, 0))
    sampler = w.add("TurboRCMSampler", mode="sde")
    sigmas = w.add("TurboRCMSigmas", steps=4, sigma_max=80.0, mid_timesteps="default")
    wan_save_video(w, vae, (sample(w, latent, guider, sampler, sigmas), 0), "turbowan_t2v")
    return w


def turbowan_i2v(info) -> Workflow:
    """TurboWan2.2 I2V A14B at 720p: the high-noise expert while sigma >= 0.9, then the low-noise one."""
    w = Workflow(info)
    high = w.add("TurboWanLoader", title="High-noise expert", turbowan_name=TURBOWAN_I2V.format("high"),
                 attention="sagesla", topk=0.1, int8=False)
    low = w.add("TurboWanLoader", title="Low-noise expert", turbowan_name=TURBOWAN_I2V.format("low"),
                attention="sagesla", topk=0.1, int8=False)
    clip = w.add("CLIPLoader", clip_name=UMT5_ENCODER, type="wan")
    vae = w.add("VAELoader", vae_name=WAN_VAE)
    positive = w.add("CLIPTextEncode", title="Prompt", text=PROMPT, clip=(clip, 0))
    negative = w.add("ConditioningZeroOut", conditioning=(positive, 0))  # no CFG: never sampled
    image = w.add("LoadImage", title="First frame", image="example.png")
    i2v = w.add("WanImageToVideo", positive=(positive, 0), negative=(negative, 0), vae=(vae, 0), width=1280,
                height=720, length=81, batch_size=1, start_image=(image, 0))
    sigmas = w.add("TurboRCMSigmas", steps=4, sigma_max=200.0, mid_timesteps="default")
    split = w.add("TurboSplitSigmasAtBoundary", sigmas=(sigmas, 0), boundary=0.9)
    sampler = w.add("TurboRCMSampler", mode="sde")
    noise = w.add("RandomNoise", noise_seed=42)
    high_sample = w.add("SamplerCustomAdvanced", title="High-noise steps", noise=(noise, 0),
                        guider=(w.add("BasicGuider", model=(high, 0), conditioning=(i2v, 0)), 0),
                        sampler=(sampler, 0), sigmas=(split, 0), latent_image=(i2v, 2))
    low_sample = w.add("SamplerCustomAdvanced", title="Low-noise steps", noise=(w.add("DisableNoise"), 0),
                       guider=(w.add("BasicGuider", model=(low, 0), conditioning=(i2v, 0)), 0),
                       sampler=(sampler, 0), sigmas=(split, 1), latent_image=(high_sample, 0))
    wan_save_video(w, vae, (low_sample, 0), "turbowan_i2v")
    return w


def turbot2av_t2av(info) -> Workflow:
    """TurboT2AV: LTX-2 19B audio-video in 4 rCM steps (no CFG, 24 fps) with W8A8, fused norms and SageSLA 0.3,
    video and audio decoded into one MP4."""
    w = Workflow(info)
    loaded = w.add("TurboT2AVLoader", student_name=TURBOT2AV_STUDENT, base_checkpoint=LTX2_CHECKPOINT)
    quantized = w.add("TurboQuantizeINT8", model=(loaded, 0), layers="all", granularity="per_channel", backend="auto")
    fused = w.add("TurboFusedNorms", model=(quantized, 0))
    model = w.add("TurboAttention", model=(fused, 0), backend="sagesla", topk=0.3, proj_l="none")
    clip = w.add("LTXAVTextEncoderLoader", text_encoder=GEMMA_ENCODER, ckpt_name=LTX2_CHECKPOINT)
    positive = w.add("CLIPTextEncode", title="Prompt", text=T2AV_PROMPT, clip=(clip, 0))
    cond = w.add("LTXVConditioning", positive=(positive, 0), negative=(positive, 0), frame_rate=24.0)
    latent = w.add("TurboT2AVEmptyLatent", width=768, height=512, length=121, batch_size=1, frame_rate=24.0)
    guider = w.add("BasicGuider", model=(model, 0), conditioning=(cond, 0))
    sampler = w.add("TurboRCMSampler", mode="sde")
    sigmas = w.add("TurboRCMSigmas", steps=4, sigma_max=80.0, mid_timesteps="turbot2av")
    split = w.add("LTXVSeparateAVLatent", av_latent=(sample(w, latent, guider, sampler, sigmas), 0))
    audio_vae = w.add("LTXVAudioVAELoader", ckpt_name=LTX2_CHECKPOINT)
    audio = w.add("LTXVAudioVAEDecode", samples=(split, 1), audio_vae=(audio_vae, 0))
    video = w.add("TurboVAEDecodeToVideo", samples=(split, 0), vae=(loaded, 1), frame_rate=24.0, crf=19,
                  memory_budget_mb=0, chunk_frames=0, chunk_overlap=24, tile_size=0, tile_overlap=64,
                  audio=(audio, 0))
    w.add("SaveVideo", video=(video, 0), filename_prefix="video/turbot2av", format="auto", codec="auto")
    return w


WORKFLOWS = {
    "ltxv_lr_to_hr_fusion_adapter.json": lambda info: ltxv_lr_to_hr(info, FUSION_ADAPTER),
    "ltxv_lr_to_hr_training_free.json": lambda info: ltxv_lr_to_hr(info, TRAINING_FREE_LRHR),
    "ltxv_lr_to_hr_student_dit_tiled.json": ltxv_lr_to_hr_student_tiled,
    "ltxv_vsr_upscale_training_free.json": lambda info: ltxv_vsr(info, TRAINING_FREE_VSR, 0.4, streamed=True),
    "ltxv_vsr_upscale_conditioner.json": lambda info: ltxv_vsr(info, VSR_CONDITIONER, 1.0, streamed=False),
    "ltxv_t2v_long_streaming_decode.json": ltxv_long_streaming,
    "ltxv_t2v_int8_sage_attention.json": ltxv_int8_sage,
    "ltxv_quantize_int8_and_save.json": ltxv_quantize_and_save,
    "turbowan_t2v_1.3b_480p_rcm.json": turbowan_t2v,
    "turbowan_i2v_a14b_720p_rcm.json": turbowan_i2v,
    "ltxv_t2v_shortcut.json": ltxv_shortcut,
    "ltxv_t2v_rcm_4_steps.json": ltxv_rcm,
    "ltxv_t2v_token_shift_euler.json": ltxv_token_shift,
    "turbot2av_t2av_4_steps.json": turbot2av_t2av,
    "ltx2_vsr_upscale.json": ltx2_vsr,
    "ltx2_lr_to_hr.json": ltx2_lr_to_hr,
    "seedvr2_tiled_upscale_to_video.json": seedvr2_tiled_upscale,
}


def comfyui_version() -> str:
    """The version of the ComfyUI on sys.path (comfyui_version.py, in its root folder)."""
    import comfyui_version

    return comfyui_version.__version__


def main():
    from host.comfy_harness import ComfyHost, find_comfyui_root

    with tempfile.TemporaryDirectory() as work:
        host = ComfyHost(find_comfyui_root(PACK_ROOT), PACK_ROOT, pathlib.Path(work))
        info = node_info(host)
    version, any_comfyui = comfyui_version(), "--any-comfyui" in sys.argv
    if version not in {OLDEST_COMFYUI, *BUILT_ON.values()} and not any_comfyui:
        sys.exit(f"ComfyUI {version}: the committed workflows are built on ComfyUI {OLDEST_COMFYUI}, the oldest "
                 f"supported (and {BUILT_ON} on the oldest that has their core nodes); set COMFYUI_PATH to it "
                 "(or pass --any-comfyui for a local try)")
    for name, build in WORKFLOWS.items():
        if lacking(name, info):
            print("skipped", name, "(this host lacks", ", ".join(lacking(name, info)) + ")")
            continue
        if built_on(name) != version and not any_comfyui:
            print("skipped", name, f"(built on ComfyUI {built_on(name)})")
            continue
        write(build(info), PACK_ROOT / "workflows" / name)
        print("wrote", name)


if __name__ == "__main__":
    main()
