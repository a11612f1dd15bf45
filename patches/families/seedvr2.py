"""SeedVR2 video super-resolution (comfy.model_base.SeedVR2, comfy.ldm.seedvr; ComfyUI 0.29 and later).

The NaDiT patches the 16-channel latent (plus SeedVR2Conditioning's 17-channel `condition`: the LR
latent and a mask, laid out like the latent) into tokens of 1 x 2 x 2 cells and attends within windows
whose size core derives from the input: a fixed count of windows over a 720p reference area, so a
window keeps its token size whatever the frame size, and every other block shifts them by half. A
tile the pack cuts therefore starts on that window grid, is n x n windows (so its own windows come
out the same size as the whole frame's) and shares whole windows with its neighbours; inside a tile
the unshifted attention is then exactly the untiled one. Where a class does not exist (0.8.0) the
family simply never matches.
"""
from __future__ import annotations

from .. import core_compat
from .family import TILING, CarriedState, Family, TilingRules, VAEFamily


def window_unit(base_model, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Latent cells (frames, rows, cols) of one attention window of the whole (T, H, W) latent.

    In time, core spreads a fixed number of windows over the video up to a longest window; below that
    every segment gets windows of its own length anyway, so only a video long enough for the longest
    window (the same window at twice the length) aligns segments to it."""
    diffusion_model = base_model.diffusion_model
    patch = core_compat.seedvr2_patch_size(diffusion_model)
    tokens = tuple(-(-n // p) for n, p in zip(shape, patch))
    window = core_compat.seedvr2_attention_window(diffusion_model, tokens)
    longer = core_compat.seedvr2_attention_window(diffusion_model, (2 * tokens[0], *tokens[1:]))
    frames = window[0] if window[0] == longer[0] else 1
    return (frames * patch[0], window[1] * patch[1], window[2] * patch[2])


def call_cost(base_model, batch: int, channels: int):
    """Core's own SeedVR2 memory law for one model call on a (t, h, w) window."""
    return lambda t, h, w: core_compat.seedvr2_call_bytes(batch, t, h, w)


FAMILY = Family(
    name="SeedVR2",
    model_classes=("SeedVR2",),
    config_classes=("SeedVR2",),
    blocks="blocks",
    self_attention=("attn",),
    head_dim="head_dim",
    width=None,  # NaDiT keeps no width attribute
    time_embedding="diffusion_model.emb_in",
    capabilities=frozenset({TILING}),
    # the NaDiT pairs cond and uncond by batch position (first half with second half), so a call holds
    # one window when the sampler batches both
    tiling=TilingRules(unit=window_unit, call_cost=call_cost, pairs_batch_halves=True),
)

# SeedVR2's VAE: causal 3D convolutions (the first frame repeated as padding) with per-frame norms and
# attention, and a frame cache that core itself carries from one latent frame to the next when it decodes;
# clips are 1 + 4k frames, 8 x 8 pixels per latent cell, and the DiT needs even latents (SeedVR2Preprocess
# pads frames to multiples of 16 px). Chunks carry that cache too, so they add up to the whole call.
VAE = VAEFamily(name="SeedVR2", core_package="seedvr", causal_encoder=True, causal_decoder=True,
                carried=CarriedState(decode=core_compat.seedvr2_decode_part, encode=core_compat.seedvr2_encode_part),
                pixel_multiple=16)
