"""A tiny LTX-2 audio VAE and vocoder in the released key layout, with the configs core reads from the metadata.

Core's LTXVAudioVAELoader reads `audio_vae.*` (the causal mel autoencoder) and `vocoder.*` (HiFi-GAN) from the
LTX-2 checkpoint and builds both from the safetensors metadata `config["audio_vae"]` / `config["vocoder"]`
(comfy/ldm/lightricks/vae/audio_vae.py); it loads with strict=False, so a key the file lacks would stay
uninitialised silently: the host test compares LAYOUT with core's own modules on each host.

Fixed by the DiT and core (not by the file): 8 latent channels x 16 latent mel bins (the DiT's audio latent),
so 64 mel bins and two 2x stages (core's LATENT_DOWNSAMPLE_FACTOR 4), stereo (the vocoder takes 2 x 64 mel
rows). Kept from the released topology: ch_mult (1, 2, 4), 2 res blocks, pixel norm, causal on the time axis,
16 kHz mel with hop 160, HiFi-GAN "1" with upsampling 6, 5, 2, 2, 2 (x240: 24 kHz out). Tiny: base width 4 and
vocoder width 32 (halved per stage down to 1).

Both hosts accept the same config: the encoder/decoder as one `ddconfig` and the sampling rate under
model.params; 0.29 reads the STFT from the top-level `preprocessing`, 0.8.0 from model.params (absent there, so
its defaults apply): the values equal those defaults, so both hosts agree on hop 160 / n_fft 1024.
"""
import torch

from .random_weights import random_state_dict

LATENT_CHANNELS, MEL_BINS, AUDIO_CHANNELS = 8, 64, 2
SAMPLE_RATE, HOP_LENGTH, N_FFT = 16000, 160, 1024
LATENT_DOWNSAMPLE = 4  # core: two 2x stages in time and frequency

DDCONFIG = {"ch": 4, "out_ch": AUDIO_CHANNELS, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [],
            "dropout": 0.0, "resamp_with_conv": True, "in_channels": AUDIO_CHANNELS, "resolution": 256,
            "z_channels": LATENT_CHANNELS, "double_z": True, "mid_block_add_attention": False,
            "norm_type": "pixel", "causality_axis": "height", "mel_bins": MEL_BINS}
AUDIO_VAE_CONFIG = {"model": {"params": {"ddconfig": DDCONFIG, "sampling_rate": SAMPLE_RATE}},
                    "preprocessing": {"stft": {"filter_length": N_FFT, "hop_length": HOP_LENGTH}}}
VOCODER_CONFIG = {"resblock": "1", "stereo": True, "upsample_initial_channel": 32,
                  "upsample_rates": [6, 5, 2, 2, 2], "upsample_kernel_sizes": [16, 15, 8, 4, 4],
                  "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3}
STATISTICS = ("std-of-means", "mean-of-means")  # per patched latent channel (8 x 16 = 128)


def _conv(key, out_channels, in_channels, kernel):
    return {f"{key}.weight": (out_channels, in_channels, *kernel), f"{key}.bias": (out_channels,)}


def _causal(key, out_channels, in_channels, kernel=(3, 3)):
    return _conv(f"{key}.conv", out_channels, in_channels, kernel)  # CausalConv2d wraps its Conv2d as .conv


def _resnet(key, in_channels, out_channels):
    layout = {**_causal(f"{key}.conv1", out_channels, in_channels),
              **_causal(f"{key}.conv2", out_channels, out_channels)}
    if in_channels != out_channels:
        layout.update(_causal(f"{key}.nin_shortcut", out_channels, in_channels, (1, 1)))
    return layout  # pixel norms and no timestep embedding: nothing else


def _middle(key, channels):
    return {**_resnet(f"{key}.mid.block_1", channels, channels), **_resnet(f"{key}.mid.block_2", channels, channels)}


def _encoder(config):
    ch, mult, blocks = config["ch"], config["ch_mult"], config["num_res_blocks"]
    layout = _causal("encoder.conv_in", ch, config["in_channels"])
    block_in = ch
    for level, m in enumerate(mult):
        for index in range(blocks):
            layout.update(_resnet(f"encoder.down.{level}.block.{index}", block_in, ch * m))
            block_in = ch * m
        if level != len(mult) - 1:
            layout.update(_conv(f"encoder.down.{level}.downsample.conv", block_in, block_in, (3, 3)))
    layout.update(_middle("encoder", block_in))
    z = config["z_channels"] * (2 if config["double_z"] else 1)
    layout.update(_causal("encoder.conv_out", z, block_in))
    return layout


def _decoder(config):
    ch, mult, blocks = config["ch"], config["ch_mult"], config["num_res_blocks"]
    block_in = ch * mult[-1]
    layout = {**_causal("decoder.conv_in", block_in, config["z_channels"]), **_middle("decoder", block_in)}
    for level in reversed(range(len(mult))):
        for index in range(blocks + 1):
            layout.update(_resnet(f"decoder.up.{level}.block.{index}", block_in, ch * mult[level]))
            block_in = ch * mult[level]
        if level != 0:
            layout.update(_causal(f"decoder.up.{level}.upsample.conv", block_in, block_in))
    layout.update(_causal("decoder.conv_out", config["out_ch"], block_in))
    return layout


def audio_vae_layout(config: dict = AUDIO_VAE_CONFIG) -> dict:
    """Bare keys of core's CausalAudioAutoencoder (under `audio_vae.` in the checkpoint)."""
    ddconfig = config["model"]["params"]["ddconfig"]
    layout = {**_encoder(ddconfig), **_decoder(ddconfig)}
    layout.update({f"per_channel_statistics.{name}": (LATENT_CHANNELS * MEL_BINS // LATENT_DOWNSAMPLE,)
                   for name in STATISTICS})
    return layout


def vocoder_layout(config: dict = VOCODER_CONFIG) -> dict:
    """Bare keys of core's HiFi-GAN Vocoder (resblock "1"; under `vocoder.` in the checkpoint)."""
    width, kernels = config["upsample_initial_channel"], config["resblock_kernel_sizes"]
    layout = _conv("conv_pre", width, 2 * MEL_BINS if config["stereo"] else MEL_BINS, (7,))
    for stage, kernel in enumerate(config["upsample_kernel_sizes"]):  # stride: config["upsample_rates"][stage]
        channels = width // 2 ** (stage + 1)  # ConvTranspose1d weight: [in, out, kernel]
        layout[f"ups.{stage}.weight"] = (width // 2 ** stage, channels, kernel)
        layout[f"ups.{stage}.bias"] = (channels,)
        for offset, (size, dilations) in enumerate(zip(kernels, config["resblock_dilation_sizes"])):
            key = f"resblocks.{stage * len(kernels) + offset}"
            for index in range(len(dilations)):
                layout.update(_conv(f"{key}.convs1.{index}", channels, channels, (size,)))
                layout.update(_conv(f"{key}.convs2.{index}", channels, channels, (size,)))
    layout.update(_conv("conv_post", AUDIO_CHANNELS if config["stereo"] else 1, channels, (7,)))
    return layout


def audio_state_dict(seed: int) -> dict:
    """`audio_vae.*` + `vocoder.*` tensors as the LTX-2 checkpoint holds them; latent statistics std > 0."""
    vae = random_state_dict(audio_vae_layout(), seed)
    vae["per_channel_statistics.std-of-means"] = vae["per_channel_statistics.std-of-means"].abs() * 25 + 0.5
    vocoder = random_state_dict(vocoder_layout(), seed + 1)
    return {**{f"audio_vae.{k}": v for k, v in vae.items()}, **{f"vocoder.{k}": v for k, v in vocoder.items()}}


def metadata_config() -> dict:
    return {"audio_vae": AUDIO_VAE_CONFIG, "vocoder": VOCODER_CONFIG}


def waveform_samples(latent_steps: int, config: dict = VOCODER_CONFIG) -> int:
    """Samples LTXVAudioVAEDecode gives for `latent_steps` audio latents: core decodes a causal latent to
    4 * steps - 3 mel frames, and the vocoder upsamples each frame by the product of its rates."""
    factor = int(torch.tensor(config["upsample_rates"]).prod())
    return (LATENT_DOWNSAMPLE * latent_steps - (LATENT_DOWNSAMPLE - 1)) * factor


def output_sample_rate(config: dict = VOCODER_CONFIG) -> int:
    """Core's rate when the config names none: sampling rate x vocoder upsampling / mel hop."""
    return SAMPLE_RATE * int(torch.tensor(config["upsample_rates"]).prod()) // HOP_LENGTH
