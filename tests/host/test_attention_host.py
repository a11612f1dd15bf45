"""TurboAttention and TurboFusedNorms in the real ComfyUI on the tiny LTX-Video (head dim 64) and Wan
(head dim 128) DiTs: UNETLoader -> node -> KSampler (2 euler steps, 192 tokens) -> latent.

Tolerances against the unpatched model's latent (relative max error): sdpa and fused norms 1e-4
(float32 rounding only), sage 5e-3 (INT8 Q/K through the reference arithmetic; measured 3e-4
and 4e-4; on the CPU 'auto' runs exact attention for sage), sla at topk 1.0 without proj_l 1e-4.
"""
import copy
import sys

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import ltx2

from host import graphs

pytestmark = pytest.mark.host

STEPS, BLOCKS = 2, 2
FAMILIES = {
    "ltxv": {"dit": "ltxv_dit_d64", "mask": True, "head_dim": 64,
             "latent": {"class_type": "EmptyLTXVLatentVideo",
                        "inputs": {"width": 256, "height": 256, "length": 17, "batch_size": 1}}},
    "wan": {"dit": "wan_dit", "mask": False, "head_dim": 128,
            "latent": {"class_type": "EmptyHunyuanLatentVideo",
                       "inputs": {"width": 128, "height": 128, "length": 9, "batch_size": 1}}},
    # LTX-2 (video head dim 128, audio 64) video-only, and with an audio latent of 17 tokens (LTXVConcatAVLatent)
    "ltx2": {"dit": "ltx2_dit_d64", "head_dim": 128, "audio": False},
    "ltx2_av": {"dit": "ltx2_dit_d64", "head_dim": 128, "audio_head_dim": 64, "audio": True},
}
AUDIO_TOKENS = 17  # ltx2_audio_frames(17 video frames)


def _pack(comfy, name):
    return sys.modules[f"{comfy.pack_module.__name__}.{name}"]


@pytest.fixture(scope="module")
def proj_l_files(comfy, tmp_path_factory):
    """Random proj_l weights for both head dims, in a folder registered as models/turbovideo."""
    folder = tmp_path_factory.mktemp("turbovideo_proj_l")
    sla_weights = _pack(comfy, "models.sla_weights")
    generator = torch.Generator().manual_seed(11)
    for d in (64, 128):
        weights = {b: (torch.randn(d, d, generator=generator), torch.randn(d, generator=generator))
                   for b in range(BLOCKS)}
        sla_weights.save_proj_l(folder / f"proj_l_d{d}.safetensors", weights)
    save_file({"lora.weight": torch.randn(4, 4)}, str(folder / "proj_l_not_sla.safetensors"))
    comfy.add_model_folder("turbovideo", folder)
    return {64: "proj_l_d64.safetensors", 128: "proj_l_d128.safetensors", "bad": "proj_l_not_sla.safetensors"}


@pytest.fixture
def attention_calls(comfy, monkeypatch):
    """Records (backend, q shape, k shape, with proj_l) of every call the override sends to the kernels."""
    kernels = _pack(comfy, "kernels.attention")
    calls, original = [], kernels.attention

    def recording(q, k, v, backend="sdpa", **kwargs):
        calls.append((backend, tuple(q.shape), tuple(k.shape), kwargs.get("proj_l") is not None))
        return original(q, k, v, backend, **kwargs)

    monkeypatch.setattr(kernels, "attention", recording)
    return calls


@pytest.fixture
def exact_calls(comfy, monkeypatch):
    """Records (query tokens, key tokens) of every call the override leaves to exact attention."""
    attention = _pack(comfy, "patches.attention")
    calls, original = [], attention.TurboAttentionOverride._exact

    def recording(self, func, q, k, v, heads, **kwargs):
        calls.append((q.shape[-2] if kwargs.get("skip_reshape") else q.shape[1], k.shape[-2] if
                      kwargs.get("skip_reshape") else k.shape[1]))
        return original(self, func, q, k, v, heads, **kwargs)

    monkeypatch.setattr(attention.TurboAttentionOverride, "_exact", recording)
    return calls


def self_attention_tokens(family) -> list[int]:
    """Tokens of each self-attention a block runs: video 8 x 8 x 3, and LTX-2's audio stream when present."""
    return [192, AUDIO_TOKENS] if FAMILIES[family].get("audio") else [192]


def self_attention_head_dims(family) -> list[int]:
    spec = FAMILIES[family]
    return [spec["head_dim"], spec["audio_head_dim"]] if spec.get("audio") else [spec["head_dim"]]


def cross_attentions(family) -> int:
    """Cross-attention calls per block: text (video, and audio when present) and LTX-2's audio <-> video."""
    return 4 if FAMILIES[family].get("audio") else 1


def prompt_for(tiny_models, family, nodes=()):
    """UNETLoader -> each (class_type, inputs) in nodes -> KSampler -> captured latent."""
    spec = FAMILIES[family]
    if family.startswith("ltx2"):
        prompt = graphs.ltx2_nodes(tiny_models[spec["dit"]], frames=17, size=256, audio=spec["audio"],
                                   config=ltx2.TRANSFORMER_19B_D64)
    else:
        prompt = {
            "unet": {"class_type": "UNETLoader",
                     "inputs": {"unet_name": tiny_models[spec["dit"]], "weight_dtype": "default"}},
            "pos": graphs.conditioning_node(0, spec["mask"]),
            "neg": graphs.conditioning_node(1, spec["mask"]),
            "latent": copy.deepcopy(spec["latent"]),
        }
    model = ["unet", 0]
    for index, (class_type, inputs) in enumerate(nodes):
        prompt[f"patch{index}"] = {"class_type": class_type, "inputs": {"model": model, **inputs}}
        model = [f"patch{index}", 0]
    prompt["sample"] = graphs.ksampler(model, ["latent", 0], steps=STEPS)
    prompt.update(graphs.capture(["sample", 0], "latent"))
    return prompt


def run_latent(comfy, captured, prompt):
    """The sampled latent; an audio-video one as video and audio flattened into one vector (for the errors)."""
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    latent = captured.pop("latent")["samples"]
    if getattr(latent, "is_nested", False):
        latent = torch.cat([part.flatten() for part in latent.unbind()])
    assert torch.isfinite(latent).all() and latent.std() > 0
    return latent


@pytest.fixture(scope="module")
def plain_latents():
    """The unpatched model's latent per family, sampled once for the module (a dict filled lazily)."""
    return {}


def plain_latent(comfy, tiny_models, captured, cache, family):
    if family not in cache:
        cache[family] = run_latent(comfy, captured, prompt_for(tiny_models, family))
    return cache[family]


def relative_error(out, expected):
    return ((out - expected).abs().max() / expected.abs().max()).item()


def attention_node(backend, topk=0.1, proj_l="none"):
    return ("TurboAttention", {"backend": backend, "topk": topk, "proj_l": proj_l})


def force_implementation(comfy, monkeypatch, implementation):
    """Every kernel call the override makes runs `implementation` (the node always asks for "auto")."""
    kernels = _pack(comfy, "kernels.attention")
    original = kernels.attention
    monkeypatch.setattr(kernels, "attention", lambda *args, **kwargs: original(
        *args, **{**kwargs, "implementation": implementation}))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend,implementation,tolerance", [("sdpa", "auto", 1e-4), ("sage", "auto", 5e-3),
                                                              ("sage", "reference", 5e-3)])
def test_attention_backend_stays_close_to_the_plain_model(comfy, tiny_models, captured, attention_calls, family,
                                                          backend, implementation, tolerance, clean_load,
                                                          plain_latents, monkeypatch, exact_calls):
    plain = plain_latent(comfy, tiny_models, captured, plain_latents, family)
    assert attention_calls == []
    force_implementation(comfy, monkeypatch, implementation)
    patched = run_latent(comfy, captured, prompt_for(tiny_models, family, [attention_node(backend)]))
    tokens = self_attention_tokens(family)
    assert len(attention_calls) == STEPS * BLOCKS * len(tokens), "one kernel call per self-attention, block, step"
    head_dims = self_attention_head_dims(family)
    for index, (called, q_shape, k_shape, _) in enumerate(attention_calls):
        assert called == backend and q_shape == k_shape
        assert q_shape[2] == tokens[index % len(tokens)], "video, then audio self-attention in every block"
        assert q_shape[-1] == head_dims[index % len(tokens)]
    assert len(exact_calls) == STEPS * BLOCKS * cross_attentions(family), exact_calls
    assert not [call for call in exact_calls if call[0] == call[1]], "a self-attention ran exact"
    if FAMILIES[family].get("audio"):  # audio_to_video_attn (Q video, K audio) and video_to_audio_attn stay exact
        assert exact_calls.count((192, AUDIO_TOKENS)) == exact_calls.count((AUDIO_TOKENS, 192)) == STEPS * BLOCKS
    error = relative_error(patched, plain)
    assert error <= tolerance, error
    if implementation == "reference":
        assert error > 1e-6, "INT8 attention cannot be bit-identical: the patch did not reach the model"
    elif backend == "sage" and not torch.cuda.is_available():
        assert error <= 1e-4, "sage on the CPU: 'auto' runs exact attention (faster there, and exact)"


@pytest.mark.parametrize("family", FAMILIES)
def test_sla_runs_and_applies_proj_l(comfy, tiny_models, captured, attention_calls, proj_l_files, family,
                                            plain_latents):
    plain = plain_latent(comfy, tiny_models, captured, plain_latents, family)
    dense = run_latent(comfy, captured, prompt_for(tiny_models, family, [attention_node("sla", topk=1.0)]))
    assert relative_error(dense, plain) <= 1e-4, "SLA at topk 1.0 without proj_l is exact attention"
    proj_l = proj_l_files[FAMILIES[family]["head_dim"]]
    sparse, trained, sage_trained = (
        run_latent(comfy, captured, prompt_for(tiny_models, family, [attention_node(backend, 0.3, weights)]))
        for backend, weights in (("sla", "none"), ("sla", proj_l), ("sagesla", proj_l)))
    assert relative_error(sparse, plain) > 1e-4, "topk 0.3 of 3 key blocks cannot be exact"
    assert relative_error(trained, sparse) > 1e-3, "the proj_l file did not change SLA's output"
    assert relative_error(sage_trained, trained) < 5e-2
    per_run = STEPS * BLOCKS * len(self_attention_tokens(family))
    assert [c[0] for c in attention_calls] == ["sla"] * 3 * per_run + ["sagesla"] * per_run
    with_proj_l = [c[3] for c in attention_calls[2 * per_run:]]  # the runs with a proj_l file
    head_dims = self_attention_head_dims(family)
    assert with_proj_l == [head_dims[i % len(head_dims)] == head_dims[0] for i in range(2 * per_run)], \
        "proj_l reaches every self-attention of its head dim (LTX-2: video attn1), and no other"


def test_unsupported_head_dim_falls_back_with_one_warning(comfy, tiny_models, captured, attention_calls,
                                                          host_warnings):
    """The default tiny LTX DiT has head dim 2: sage cannot run, the model must run exactly as before."""
    prompt = prompt_for(tiny_models, "ltxv")
    prompt["unet"]["inputs"]["unet_name"] = tiny_models["ltxv_dit"]
    prompt["latent"]["inputs"].update(width=64, height=64, length=9)
    plain = run_latent(comfy, captured, prompt)
    host_warnings.records.clear()
    prompt["patch0"] = {"class_type": "TurboAttention", "inputs": {"model": ["unet", 0], "backend": "sage",
                                                                   "topk": 0.1, "proj_l": "none"}}
    prompt["sample"]["inputs"]["model"] = ["patch0", 0]
    patched = run_latent(comfy, captured, prompt)
    warnings = [m for m in host_warnings.records if "TurboAttention" in m]
    assert len(warnings) == 1 and "head dim 2" in warnings[0], warnings
    assert attention_calls == [] and torch.equal(patched, plain)


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_norms_match_the_plain_model(comfy, tiny_models, captured, monkeypatch, family, plain_latents):
    norms = _pack(comfy, "kernels.norms")
    seen = []
    for name in ("rms_norm", "layer_norm"):
        original = getattr(norms, name)
        monkeypatch.setattr(norms, name, lambda *a, _o=original, _n=name, **k: seen.append(_n) or _o(*a, **k))
    plain = plain_latent(comfy, tiny_models, captured, plain_latents, family)
    fused = run_latent(comfy, captured, prompt_for(tiny_models, family, [("TurboFusedNorms", {}),
                                                                          attention_node("sage")]))
    assert "rms_norm" in seen, "q/k RMSNorms did not run the fused kernels"
    assert family == "ltxv" or "layer_norm" in seen, "Wan's LayerNorms did not run the fused kernels"
    alone = run_latent(comfy, captured, prompt_for(tiny_models, family, [("TurboFusedNorms", {})]))
    assert relative_error(alone, plain) <= 1e-4
    assert relative_error(fused, plain) <= 5e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_model_is_restored(comfy, tiny_models, captured, family):
    import comfy.model_management as mm

    prompt = prompt_for(tiny_models, family, [("TurboFusedNorms", {}), attention_node("sla", 0.3)])
    prompt.update(graphs.capture(["unet", 0], "model"))
    run_latent(comfy, captured, prompt)
    unet = captured.pop("model")
    mm.unload_all_models()
    diffusion_model = unet.model.diffusion_model
    modules = [type(m).__name__ for m in diffusion_model.modules()]
    assert not [name for name in modules if name.startswith(("Fused", "SelfAttentionSite"))], modules
    assert "optimized_attention_override" not in unet.model_options.get("transformer_options", {})


def test_proj_l_errors_name_the_input(comfy, tiny_models, proj_l_files):
    wrong_dim = comfy.run(prompt_for(tiny_models, "ltxv", [attention_node("sla", 0.1, proj_l_files[128])]))
    assert not wrong_dim.ok
    message = wrong_dim.execution_error["exception_message"]
    assert "head dim 128" in message and "head dim is 64" in message, message
    not_sla = comfy.run(prompt_for(tiny_models, "wan", [attention_node("sla", 0.1, proj_l_files["bad"])]))
    assert not not_sla.ok and "is not an SLA proj_l file" in str(not_sla.node_errors), not_sla.describe()
    wrong_backend = comfy.run(prompt_for(tiny_models, "wan", [attention_node("sage", 0.1, proj_l_files[128])]))
    assert not wrong_backend.ok and "only the sla and sagesla backends" in str(wrong_backend.node_errors)
