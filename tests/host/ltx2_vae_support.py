"""The tiny LTX-2 / LTX-2.3 VAEs in host tests: which hosts build them, and core's LTX-2 decode noise.

Core's LTX-2 VideoVAE is timestep-conditioned: every decode call first mixes fresh unseeded noise into the latent
(x <- 0.975 x + 0.025 torch.randn_like(x)) and decodes at timestep 0.05, so two whole decodes of one latent already
differ by a noise floor, and a chunked decode (its own draw per piece) differs from a whole one by about as much.
"""
import pytest
import torch

NOISY_DECODE = ("ltx2", "ltx2_base8")  # timestep-conditioned LTX-2 decoders: core adds noise per decode call
HOST_29_ONLY = {"ltx2_base8": "LTX2_VAE_BASE8_CONFIG", "ltx23": "LTX23_VAE_CONFIG"}  # tiny_models.ltx2_vae


def core_builds(config) -> bool:
    """Whether this host's VideoVAE builds exactly the tiny layout of `config` (core 0.8.0 reads no base widths
    and no channel multipliers on compress_space / compress_time, so LTX-2.3 and base-width VAEs need 0.29)."""
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE
    from tiny_models import ltx2_vae

    with torch.device("meta"):
        model = VideoVAE(config=config)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    return all(shapes.get(key) == shape for key, shape in ltx2_vae.vae_layout(config).items())


def require_host_support(family):
    from tiny_models import ltx2_vae

    if family in HOST_29_ONLY and not core_builds(getattr(ltx2_vae, HOST_29_ONLY[family])):
        pytest.skip(f"{family}: this ComfyUI's VideoVAE reads no encoder_/decoder_base_channels and no channel "
                    "multipliers on compress_space / compress_time (and its VAELoader reads no metadata): the LTX-2.3 "
                    "VAE and base-width LTX-2 VAEs load on ComfyUI 0.29.0, not 0.8.0")


@pytest.fixture
def repeatable_decode_noise(monkeypatch):
    """Core's LTX-2 decode noise (torch.randn_like, unseeded) drawn from one fixed seed at every call, so two
    decode calls of one latent give the same frames."""
    def randn_like(x, *, dtype=None, **_):
        draw = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
        return draw.to(device=x.device, dtype=dtype or x.dtype)

    monkeypatch.setattr(torch, "randn_like", randn_like)


@pytest.fixture
def zero_decode_noise(monkeypatch):
    """Core's LTX-2 decode noise drawn as zeros: the decode is then a deterministic function of the latent."""
    monkeypatch.setattr(torch, "randn_like", lambda x, *, dtype=None, **_: torch.zeros_like(x, dtype=dtype))


def noise_floor(vae, latent, family) -> float:
    """Mean absolute difference of two whole decodes of `latent`: 0 unless core adds decode noise."""
    if family not in NOISY_DECODE:
        return 0.0
    with torch.inference_mode():
        return (vae.decode(latent) - vae.decode(latent)).abs().mean().item()
