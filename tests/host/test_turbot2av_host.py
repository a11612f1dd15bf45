"""TurboT2AVLoader on tiny students in TurboT2AV's released layout, completed from a tiny LTX-2 19B-layout
base checkpoint, sampled the TurboT2AV way (rCM turbot2av preset, 4 steps, no CFG, 24 fps, AV latent)."""
import re

import pytest
import torch
from tiny_models import ltx2
from tiny_models import turbot2av as tiny
from tiny_models import turbowan as tiny_wan

from host import graphs
from host.test_int8_host import gemm_calls  # noqa: F401  (fixture: pack and comfy-kitchen INT8 GEMM calls)

pytestmark = pytest.mark.host

FRAMES, SIZE = 9, 64


def connectors_in_dit() -> bool:
    from turbovideo.patches import core_compat

    return core_compat.ltxav_dit_has_text_connectors()


def conditioning_width() -> int:
    """Gemma-projection width (core 0.29 runs the DiT's connectors on it), or the processed [video | audio]
    connector output (core 0.8.0: the text encoder ran them)."""
    caption = ltx2.TRANSFORMER_19B["caption_channels"]
    return caption if connectors_in_dit() else 2 * caption


def base_path(name):
    import folder_paths

    return folder_paths.get_full_path_or_raise("checkpoints", name)


@pytest.fixture(scope="session")
def t2av_files(comfy, tiny_models, tmp_path_factory):
    import pathlib

    import convert_turbot2av

    folder = tmp_path_factory.mktemp("turbot2av") / "diffusion_models"
    base = pathlib.Path(base_path(tiny_models["ltx2_checkpoint"]))
    weights = tiny.student_weights(seed=51)
    files = {variant: tiny.write_student(folder / f"TurboT2AV-{variant}.pth", weights, variant)
             for variant in tiny.VARIANTS}
    files["native"] = tiny.write_native(folder / "TurboT2AV-native.safetensors", weights, base)
    files["converted"] = convert_turbot2av.convert_file(folder / files["generator"], base,
                                                        folder / "TurboT2AV-converted.safetensors").name
    files["other"] = tiny.write_student(folder / "TurboT2AV-other.pth", tiny.student_weights(seed=52))
    comfy.add_model_folder("diffusion_models", folder)
    return files


def loader(student, base):
    return {"class_type": "TurboT2AVLoader", "inputs": {"student_name": student, "base_checkpoint": base}}


def unet(name):
    return {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}


def t2av_graph(model_node, seed=5):
    prompt = {
        "model": model_node,
        "text": {"class_type": "TurboTestConditioning",
                 "inputs": {"tokens": 7, "width": conditioning_width(), "seed": 3, "attention_mask": False}},
        "pos": {"class_type": "LTXVConditioning",
                "inputs": {"positive": ["text", 0], "negative": ["text", 0], "frame_rate": 24.0}},
        "latent": {"class_type": "TurboT2AVEmptyLatent", "inputs": {
            "width": SIZE, "height": SIZE, "length": FRAMES, "batch_size": 1, "frame_rate": 24.0}},
        "sigmas": {"class_type": "TurboRCMSigmas", "inputs": {"steps": 4, "sigma_max": 80.0,
                                                              "mid_timesteps": "turbot2av"}},
        "sampler": {"class_type": "TurboRCMSampler", "inputs": {"mode": "sde"}},
    }
    prompt.update(graphs.custom_sampler_nodes(["model", 0], ["latent", 0], ["sampler", 0], ["sigmas", 0], seed))
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


def run_av(comfy, captured, model_node, prompt=None):
    captured.clear()
    result = comfy.run(prompt or t2av_graph(model_node))
    assert result.ok, result.describe()
    video, audio = captured["latent"]["samples"].unbind()
    return video.clone(), audio.clone()


def assert_same(a, b, atol):
    for got, expected in zip(a, b):
        torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def relative(a, b):
    return max(((x - y).norm() / y.norm()).item() for x, y in zip(a, b))


def test_student_equals_core_loading_the_completed_weights(comfy, tiny_models, t2av_files, captured):
    base = tiny_models["ltx2_checkpoint"]
    student = run_av(comfy, captured, loader(t2av_files["generator"], base))
    native = run_av(comfy, captured, unet(t2av_files["native"]))
    video, audio = student
    assert video.shape == (1, 128, 2, 2, 2) and audio.shape == (1, 8, 9, 16)  # round(9 / 24 * 25) = 9
    assert all(torch.isfinite(t).all() and t.std() > 0.05 for t in student)
    assert_same(student, native, atol=1e-6)
    other = run_av(comfy, captured, loader(t2av_files["other"], base))
    assert relative(other, student) > 1e-2  # the student's own tensors make the output


def test_the_loader_leaves_no_key_unused_or_missing(comfy, tiny_models, t2av_files, captured, clean_load):
    run_av(comfy, captured, loader(t2av_files["generator"], tiny_models["ltx2_checkpoint"]))


@pytest.mark.parametrize("variant", [v for v in tiny.VARIANTS if v != "generator"] + ["converted", "converted-core"])
def test_every_layout_and_the_converted_file_give_the_same_model(comfy, tiny_models, t2av_files, captured, variant):
    base = tiny_models["ltx2_checkpoint"]
    reference = run_av(comfy, captured, loader(t2av_files["generator"], base))
    node = unet(t2av_files["converted"]) if variant == "converted-core" else loader(t2av_files[variant], base)
    assert_same(run_av(comfy, captured, node), reference, atol=0)


def test_the_base_connectors_reach_the_dit_where_core_runs_them(comfy, tiny_models, t2av_files, captured,
                                                                tmp_path_factory):
    if not connectors_in_dit():
        pytest.skip("core 0.8.0 runs LTX-2's text connectors in the text encoder (LTXAVTextEncoderLoader takes "
                    "them from the base checkpoint), not in the DiT")
    folder = tmp_path_factory.mktemp("other_base") / "checkpoints"
    other_base = ltx2.write_checkpoint(folder / "tiny_ltx2_other_connectors.safetensors", seed=77)
    comfy.add_model_folder("checkpoints", folder)
    student = run_av(comfy, captured, loader(t2av_files["generator"], tiny_models["ltx2_checkpoint"]))
    swapped = run_av(comfy, captured, loader(t2av_files["generator"], other_base))
    assert relative(swapped, student) > 1e-2


def test_the_graph_samples_turbot2avs_sigmas(comfy, tiny_models, t2av_files, captured):
    from turbovideo.samplers import rcm

    prompt = t2av_graph(loader(t2av_files["generator"], tiny_models["ltx2_checkpoint"]))
    prompt.update(graphs.capture(["sigmas", 0], "sigmas"))
    run_av(comfy, captured, None, prompt)
    assert torch.equal(captured["sigmas"], rcm.rcm_preset_sigmas("turbot2av", 4))


def test_empty_latent_has_turbot2avs_audio_length(comfy, captured):
    captured.clear()
    prompt = {"latent": {"class_type": "TurboT2AVEmptyLatent", "inputs": {
        "width": 96, "height": 64, "length": 121, "batch_size": 2, "frame_rate": 24.0}}}
    prompt.update(graphs.capture(["latent", 0], "latent"))
    assert comfy.run(prompt).ok
    video, audio = captured["latent"]["samples"].unbind()
    assert video.shape == (2, 128, 16, 2, 3) and audio.shape == (2, 8, 126, 16)  # core's ceiling: 127


@pytest.mark.parametrize("kind, message", [
    ("full_checkpoint", "full LTX-2 checkpoint.*Choose it as base_checkpoint"),
    ("wan", "Wan / TurboWan model.*TurboWanLoader"),
    ("truncated", "truncated or damaged.*re-download"),
    ("code", "holds Python objects or code.*refused and nothing in it was run"),
])
def test_wrong_files_say_what_to_load_instead(comfy, tiny_models, t2av_files, tmp_path_factory, kind, message):
    folder = tmp_path_factory.mktemp(f"bad_{kind}") / "diffusion_models"
    folder.mkdir(parents=True)
    marker = folder.parent / "MARKER"
    name = f"bad-{kind}.pth"
    if kind == "full_checkpoint":
        name = "ltx-2-19b-dev-as-student.safetensors"
        (folder / name).write_bytes(open(base_path(tiny_models["ltx2_checkpoint"]), "rb").read())
    elif kind == "wan":
        torch.save(tiny_wan.to_turbowan(tiny_wan.native_state_dict()), str(folder / name))
    elif kind == "truncated":
        data = (t2av_files_path(comfy, t2av_files["generator"])).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 3])
    else:
        torch.save({"generator": {"model.x": torch.ones(1)}, "hook": MarkerPayload(str(marker))}, str(folder / name))
    comfy.add_model_folder("diffusion_models", folder)
    result = comfy.run(t2av_graph(loader(name, tiny_models["ltx2_checkpoint"])))
    assert not result.ok and re.search(message, result.describe()), result.describe()
    assert not marker.exists()


def t2av_files_path(comfy, name):
    import pathlib

    import folder_paths

    return pathlib.Path(folder_paths.get_full_path_or_raise("diffusion_models", name))


class MarkerPayload:
    """Unpickling this would create `path` (builtins.open)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_missing_files_are_validation_errors(comfy, tiny_models, t2av_files):
    result = comfy.run(t2av_graph(loader("nope.pth", tiny_models["ltx2_checkpoint"])))
    assert not result.ok and "student_name" in result.describe()
    result = comfy.run(t2av_graph(loader(t2av_files["generator"], "nope.safetensors")))
    assert not result.ok and "base_checkpoint" in result.describe()


def test_core_compat_knows_where_ltx2s_text_connectors_live(comfy, tiny_models):
    """The reach (patches/core_compat.ltxav_dit_has_text_connectors) against what core really builds."""
    import comfy.sd
    import folder_paths

    path = folder_paths.get_full_path_or_raise("diffusion_models", tiny_models["ltx2_dit"])
    diffusion_model = comfy.sd.load_diffusion_model(path).model.diffusion_model
    assert connectors_in_dit() == hasattr(diffusion_model, "video_embeddings_connector")
    assert connectors_in_dit() == hasattr(diffusion_model, "audio_embeddings_connector")


def test_the_video_vae_is_the_base_checkpoints_as_core_loads_it(comfy, tiny_models, t2av_files, captured):
    from host.test_only_nodes import SOURCES

    SOURCES["t2av_latent"] = torch.randn(1, 128, 2, 2, 2, generator=torch.Generator().manual_seed(8))
    base = tiny_models["ltx2_checkpoint"]
    prompt = {"model": loader(t2av_files["generator"], base),
              "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": base}},
              "latent": {"class_type": "TurboTestLatentSource", "inputs": {"key": "t2av_latent"}},
              "ours": {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["model", 1]}},
              "core": {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["ckpt", 2]}}}
    prompt.update(graphs.capture(["ours", 0], "ours"))
    prompt.update(graphs.capture(["model", 1], "our_vae"))
    prompt.update(graphs.capture(["ckpt", 2], "core_vae"))
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    assert captured["ours"].shape == (9, 64, 64, 3) and captured["ours"].std() > 0
    # the LTX-2 decoder mixes fresh noise into every decode (docs/vae.md): the same VAE is the same weights
    ours, core = (captured[key].first_stage_model.state_dict() for key in ("our_vae", "core_vae"))
    assert ours.keys() == core.keys() and all(torch.equal(ours[key], core[key]) for key in core)


@pytest.mark.parametrize("channels", [1, 2])
def test_the_streamed_mp4_carries_the_soundtrack_cut_to_the_video(comfy, tmp_path, channels):
    import av
    from turbovideo.patches import video_stream

    rate, frames, fps, tone = 24000, 25, 24.0, 440.0
    t = torch.arange(int(rate * 1.5)) / rate  # 1.5 s of sound for a 25 / 24 s video
    waveform = (0.5 * torch.sin(2 * torch.pi * tone * t)).expand(1, channels, -1)
    blocks = [torch.rand(10, 32, 48, 3), torch.rand(frames - 10, 32, 48, 3)]
    path = str(tmp_path / "av.mp4")
    assert video_stream.write_video(path, blocks, fps, audio={"waveform": waveform, "sample_rate": rate}) == frames
    with av.open(path) as container:
        audio_stream = container.streams.audio[0]
        assert audio_stream.rate == rate and audio_stream.channels == channels
        decoded = torch.cat([torch.from_numpy(f.to_ndarray()).reshape(channels, -1)
                             for f in container.decode(audio=0)], dim=1)
    assert abs(decoded.shape[1] / rate - frames / fps) < 0.1  # cut to the video, not the 1.5 s given
    spectrum = torch.fft.rfft(decoded[0, 4096:4096 + rate // 4].double()).abs()
    assert abs(spectrum.argmax().item() * 4 - tone) <= 8  # the soundtrack is the tone that went in
    with pytest.raises(ValueError, match="mono or stereo"):
        video_stream.write_video(str(tmp_path / "x.mp4"), blocks, fps,
                                 audio={"waveform": torch.zeros(1, 6, 100), "sample_rate": rate})


# --- the speed nodes on TurboT2AV (SageSLA scope, W8A8, fused norms) -------------------------------------

D64_FRAMES, D64_SIZE = 9, 256  # video 2 x 8 x 8 = 128 tokens: two 64-token key blocks, so top-k 0.3 is sparse


def require(capability):
    from turbovideo.patches import families

    if capability not in families.ltx2.FAMILY.capabilities:
        pytest.skip(f"LTX-2 has no {capability} support in this tree yet (the LTX-2 issue adds it)")


def pack_module(comfy, name):
    import sys

    return sys.modules[f"{comfy.pack_module.__name__}.{name}"]


@pytest.fixture(scope="session")
def d64_files(comfy, tmp_path_factory):
    root = tmp_path_factory.mktemp("turbot2av_d64")
    base = ltx2.write_checkpoint(root / "checkpoints" / "tiny_ltx2_d64.safetensors", tiny.TRANSFORMER_D64, seed=61)
    student = tiny.write_student(root / "diffusion_models" / "TurboT2AV-d64.pth",
                                 tiny.student_weights(tiny.TRANSFORMER_D64, seed=62))
    comfy.add_model_folder("checkpoints", root / "checkpoints")
    comfy.add_model_folder("diffusion_models", root / "diffusion_models")
    return {"base": base, "student": student}


def d64_graph(d64_files, speed_nodes):
    caption = tiny.TRANSFORMER_D64["caption_channels"]
    prompt = t2av_graph(loader(d64_files["student"], d64_files["base"]))
    prompt["text"]["inputs"]["width"] = caption if connectors_in_dit() else 2 * caption
    prompt["latent"]["inputs"].update(width=D64_SIZE, height=D64_SIZE, length=D64_FRAMES)
    source = ["model", 0]
    for index, (class_type, inputs) in enumerate(speed_nodes):
        prompt[f"speed{index}"] = {"class_type": class_type, "inputs": {"model": source, **inputs}}
        source = [f"speed{index}", 0]
    prompt["guider"]["inputs"]["model"] = source
    return prompt


SAGESLA = ("TurboAttention", {"backend": "sagesla", "topk": 0.3, "proj_l": "none"})


def test_sagesla_runs_exactly_the_video_and_audio_self_attention(comfy, d64_files, captured, monkeypatch):
    """TurboT2AV's --attention_scope self: every block's attn1 and audio_attn1; the text cross-attention, the
    audio-video cross-attentions and the text connectors' attention stay exact."""
    require("TurboAttention")
    kernels = pack_module(comfy, "kernels.attention")
    calls, original = [], kernels.attention

    def recording(q, k, v, backend, **kwargs):
        calls.append((backend, q.shape[-2], k.shape[-2], kwargs.get("topk"), kwargs.get("proj_l")))
        return original(q, k, v, backend, **kwargs)

    monkeypatch.setattr(kernels, "attention", recording)
    exact = run_av(comfy, captured, None, d64_graph(d64_files, []))
    assert calls == []
    sparse = run_av(comfy, captured, None, d64_graph(d64_files, [SAGESLA]))
    video_tokens, audio_tokens = 2 * 8 * 8, turbot2av_audio(D64_FRAMES)
    per_step = {("sagesla", video_tokens, video_tokens, 0.3, None): 2,
                ("sagesla", audio_tokens, audio_tokens, 0.3, None): 2}
    assert {c: calls.count(c) for c in set(calls)} == {c: 4 * n for c, n in per_step.items()}  # 2 blocks, 4 steps
    assert all(torch.isfinite(t).all() for t in sparse) and relative(sparse, exact) > 1e-3


def turbot2av_audio(frames):
    from turbovideo.models import turbot2av

    return turbot2av.audio_latent_length(frames)


def test_turbot2avs_speed_chain_runs_int8_and_sagesla(comfy, d64_files, captured, gemm_calls):  # noqa: F811
    """The workflow's chain on the student: W8A8 per-channel on the block Linears, fused norms, SageSLA 0.3.
    On a core with native INT8 (0.27+) backend auto runs the faster of the pack's GEMM and comfy-kitchen's,
    measured once per Linear shape on trial rows: the count is taken on a run after that measurement."""
    require("TurboAttention")
    require("TurboQuantizeINT8")
    chain = [("TurboQuantizeINT8", {"layers": "all", "granularity": "per_channel", "backend": "auto"}),
             ("TurboFusedNorms", {}), SAGESLA]
    plain = run_av(comfy, captured, None, d64_graph(d64_files, []))
    run_av(comfy, captured, None, d64_graph(d64_files, chain))  # measures each new shape (trial calls)
    gemm_calls.update(pack=0, core=0)
    fast = run_av(comfy, captured, None, d64_graph(d64_files, chain))
    block_linears = 2 * (6 * 4 + 2 * 2)  # 2 blocks x (6 attentions x q, k, v, out + 2 feed-forwards x 2)
    # every block Linear, every step, as INT8 GEMMs
    assert gemm_calls["pack"] + gemm_calls["core"] == 4 * block_linears, gemm_calls
    assert all(torch.isfinite(t).all() for t in fast) and 1e-3 < relative(fast, plain) < 0.5


def test_fused_norms_on_the_student_run_every_norm_fused(comfy, d64_files, captured, monkeypatch):
    """TurboFusedNorms on the loaded student: the q/k RMSNorms of every attention run the fused kernels (12 per
    block and step; on core 0.29 also the connectors', which run once per sampling, when the conds are built),
    within float rounding of core's own norms."""
    norms = pack_module(comfy, "kernels.norms")
    calls, original = [], norms.rms_norm

    def counting(x, *args, **kwargs):
        calls.append(x.shape[-1])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(norms, "rms_norm", counting)
    plain = run_av(comfy, captured, None, d64_graph(d64_files, []))
    assert calls == []
    fused = run_av(comfy, captured, None, d64_graph(d64_files, [("TurboFusedNorms", {})]))
    connectors = 2 * 2 if connectors_in_dit() else 0  # one connector layer each: q_norm, k_norm
    assert len(calls) == 4 * 2 * 12 + connectors  # 4 steps x 2 blocks x 6 attentions x (q, k norm)
    assert relative(fused, plain) < 1e-5
