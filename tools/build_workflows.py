"""Builds the example workflows in workflows/ from the graphs below, with the real host's node info.

Run with ComfyUI's Python: `COMFYUI_PATH=/path/to/ComfyUI python tools/build_workflows.py`.
Each graph names the model files a user downloads (README: which file goes in which folder).
"""
import pathlib
import sys
import tempfile

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "tests"))
sys.path.insert(0, str(PACK_ROOT / "tools"))

from workflow_format import Workflow, write  # noqa: E402

LTXV_CHECKPOINT = "ltxv-2b-0.9.8-distilled.safetensors"
T5_ENCODER = "t5xxl_fp16.safetensors"
STEP_ADAPTER = "ltxv_2b_step_size_embedder.safetensors"  # trained with training/ (docs/adapters.md)
PROMPT = ("A red fox trots through fresh snow at dawn, its breath steaming, soft golden light, "
          "shallow depth of field, the camera tracks alongside at ground level.")
NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"


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


def sample_and_save(w: Workflow, ckpt, latent, guider, sampler, sigmas, prefix) -> Workflow:
    noise = w.add("RandomNoise", noise_seed=42)
    sample = w.add("SamplerCustomAdvanced", noise=(noise, 0), guider=(guider, 0), sampler=(sampler, 0),
                   sigmas=(sigmas, 0), latent_image=(latent, 0))
    ltxv_save_video(w, ckpt, (sample, 0), prefix)
    return w


def ltxv_rcm(info) -> Workflow:
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    guider = w.add("BasicGuider", model=(ckpt, 0), conditioning=(cond, 0))
    sampler = w.add("TurboRCMSampler", mode="sde")
    sigmas = w.add("TurboRCMSigmas", steps=4, sigma_max=80.0, mid_timesteps="default")
    return sample_and_save(w, ckpt, latent, guider, sampler, sigmas, "turbo_rcm")


def ltxv_token_shift(info) -> Workflow:
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    guider = w.add("CFGGuider", model=(ckpt, 0), positive=(cond, 0), negative=(cond, 1), cfg=3.0)
    sampler = w.add("KSamplerSelect", sampler_name="euler")
    sigmas = w.add("TurboLTXShiftSigmas", latent=(latent, 0), steps=20)
    return sample_and_save(w, ckpt, latent, guider, sampler, sigmas, "turbo_token_shift")


def ltxv_shortcut(info) -> Workflow:
    w = Workflow(info)
    ckpt, cond, latent = ltxv_text_to_video_front(w)
    model = w.add("TurboShortcutModel", model=(ckpt, 0), adapter=STEP_ADAPTER)
    guider = w.add("BasicGuider", model=(model, 0), conditioning=(cond, 0))
    sampler = w.add("TurboShortcutSampler")
    sigmas = w.add("TurboShortcutSigmas", steps=4, shift_mode="from latent size", shift=1.0, latent=(latent, 0))
    return sample_and_save(w, ckpt, latent, guider, sampler, sigmas, "turbo_shortcut")


WORKFLOWS = {
    "ltxv_t2v_shortcut.json": ltxv_shortcut,
    "ltxv_t2v_rcm_4_steps.json": ltxv_rcm,
    "ltxv_t2v_token_shift_euler.json": ltxv_token_shift,
}


def main():
    from host.comfy_harness import ComfyHost, find_comfyui_root

    with tempfile.TemporaryDirectory() as work:
        host = ComfyHost(find_comfyui_root(PACK_ROOT), PACK_ROOT, pathlib.Path(work))
        info = node_info(host)
    for name, build in WORKFLOWS.items():
        write(build(info), PACK_ROOT / "workflows" / name)
        print("wrote", name)


if __name__ == "__main__":
    main()
