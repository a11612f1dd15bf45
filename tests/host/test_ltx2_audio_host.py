"""The tiny LTX-2 audio VAE + vocoder (tests/tiny_models/ltx2_audio.py) in core's own LTXVAudioVAELoader.

Core loads them with strict=False (a key the file lacks stays uninitialised, silently), so the file must hold
exactly the keys core's CausalAudioAutoencoder and Vocoder build from the metadata config on this host, every
tensor as written; core reads the geometry the DiT needs (8 latent channels x 16 latent mel bins) and the rates
the soundtrack gets. LTXVAudioVAEDecode then gives the length ltx2_audio.waveform_samples says, which the
end-to-end workflow test (test_workflows_run.py) expects in the MP4.
"""
import pytest
import torch
from safetensors import safe_open
from tiny_models import ltx2_audio

from host import graphs
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

PREFIXES = {"audio_vae.": "autoencoder.", "vocoder.": "vocoder."}  # file -> core's AudioVAE module


def file_tensors(name):
    import folder_paths

    with safe_open(folder_paths.get_full_path_or_raise("checkpoints", name), "pt") as file:
        return {PREFIXES[prefix] + key[len(prefix):]: file.get_tensor(key)
                for key in file.keys() for prefix in PREFIXES if key.startswith(prefix)}


def audio_vae_module(loaded):
    """Core 0.8.0's loader gives the AudioVAE module, 0.29's a comfy.sd.VAE around it."""
    return getattr(loaded, "first_stage_model", loaded)


def load(comfy, captured, checkpoint):
    prompt = {"audio_vae": {"class_type": "LTXVAudioVAELoader", "inputs": {"ckpt_name": checkpoint}}}
    prompt.update(graphs.capture(["audio_vae", 0], "audio_vae"))
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    return captured["audio_vae"]


def test_tiny_audio_vae_holds_exactly_what_core_builds(comfy, captured, tiny_models, clean_load):
    module = audio_vae_module(load(comfy, captured, tiny_models["ltx2_checkpoint"]))
    built, written = module.state_dict(), file_tensors(tiny_models["ltx2_checkpoint"])
    missing, unexpected = sorted(set(built) - set(written)), sorted(set(written) - set(built))
    assert not missing and not unexpected, f"missing: {missing[:8]}, unexpected: {unexpected[:8]}"
    assert all(torch.equal(built[key].cpu(), written[key]) for key in built)  # loaded, not left as built
    assert (module.latent_channels, module.latent_frequency_bins) == (8, 16)  # the DiT's audio latent
    assert (module.sample_rate, module.mel_hop_length, module.preprocessor.n_fft) == (
        ltx2_audio.SAMPLE_RATE, ltx2_audio.HOP_LENGTH, ltx2_audio.N_FFT)
    assert module.output_sample_rate == ltx2_audio.output_sample_rate() == 24000


@pytest.mark.parametrize("steps", [1, 7, 18])
def test_audio_decode_gives_the_expected_stereo_waveform(comfy, captured, tiny_models, steps):
    SOURCES["ltx2_audio_latent"] = torch.randn(1, 8, steps, 16, generator=torch.Generator().manual_seed(steps))
    loader = {"class_type": "LTXVAudioVAELoader", "inputs": {"ckpt_name": tiny_models["ltx2_checkpoint"]}}
    prompt = {"audio_vae": loader,
              "latent": {"class_type": "TurboTestLatentSource", "inputs": {"key": "ltx2_audio_latent"}},
              "audio": {"class_type": "LTXVAudioVAEDecode",
                        "inputs": {"samples": ["latent", 0], "audio_vae": ["audio_vae", 0]}}}
    prompt.update(graphs.capture(["audio", 0], "audio"))
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    audio = captured["audio"]
    assert audio["sample_rate"] == ltx2_audio.output_sample_rate()
    assert tuple(audio["waveform"].shape) == (1, 2, ltx2_audio.waveform_samples(steps))
    waveform = audio["waveform"]
    assert torch.isfinite(waveform).all() and waveform.abs().max() <= 1 and waveform.std() > 0
