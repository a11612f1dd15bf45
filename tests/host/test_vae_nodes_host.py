"""TurboVAEEncode / TurboVAEDecode / TurboVAEDecodeToVideo in real graphs on the tiny LTX-Video, LTX-2,
LTX-2.3 and Wan VAEs.

Chunked and tiled results are compared with the core VAEDecode / VAEEncode on the same inputs in the
same graph: mean absolute difference <= 1e-2 (pixels in [0, 1]; latents relative to their mean
magnitude). The LTX-2 decoder is timestep-conditioned and core adds fresh noise to the latent at every
decode call (0.025 of a unit normal, unseeded), so two whole decodes of one latent already differ by a
noise floor N; there the bound is 1e-2 + N, N measured on the same latent (test_ltx2_vae_host.py checks
1e-2 with that noise set to zero), and tests that need one call to equal another fix core's draw per
call (`repeatable_decode_noise`).

The tiny random VAEs see far: the LTX decoder 4-5 latent frames (and ~4 latent pixels) each way, the
causal LTX encoder 5 back, the LTX-2 / 2.3 encoders (compress_*_res stages) ~10 back and ~6 latent pixels
around, the causal Wan VAE ~22 back, so the overlaps here cover that, and the inputs are smooth random
videos whose decodes are checked to be far from constant.
A pointwise stand-in VAE (exact under any cut) checks the bookkeeping itself to 1e-6.
"""
import sys

import av
import pytest
import torch

from host import graphs
from host.ltx2_vae_support import noise_floor, repeatable_decode_noise, require_host_support  # noqa: F401 (fixture)
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

TOLERANCE = 1e-2
LTX_FAMILIES = ("ltxv", "ltx2", "ltx2_base8", "ltx23")


@pytest.fixture(scope="module")
def host(comfy, tiny_models):
    return comfy


def smooth_video(frames, size, seed, knots=9):
    """Random values on a coarse space-time grid, trilinearly upsampled: in [0, 1], far from constant."""
    base = torch.rand(1, 3, knots, knots, knots, generator=torch.Generator().manual_seed(seed))
    video = torch.nn.functional.interpolate(base, size=(frames, size, size), mode="trilinear", align_corners=True)
    return video[0].permute(1, 2, 3, 0).contiguous()


def vae_nodes(models, family):
    """The loader of a family's tiny VAE: checkpoints (whose metadata core 0.8.0 reads) or VAELoader."""
    require_host_support(family)
    if family in ("ltxv", "ltx2"):
        return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {
            "ckpt_name": models[f"{family}_checkpoint"]}}}, ["ckpt", 2]
    name = models["wan_vae" if family == "wan" else f"{family}_vae"]
    return {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": name}}}, ["vae", 0]


def chunk_widgets(budget=0, frames=0, overlap=24, tile=0, tile_overlap=64):
    return {"memory_budget_mb": budget, "chunk_frames": frames, "chunk_overlap": overlap, "tile_size": tile,
            "tile_overlap": tile_overlap}


def run_ok(comfy, captured, prompt):
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    return captured


def encode_both(comfy, captured, models, family, video, frame_count="error", **widgets):
    """Core VAEEncode and TurboVAEEncode of the same frames, plus both decoded by core VAEDecode."""
    SOURCES["video"] = video
    prompt, vae = vae_nodes(models, family)
    prompt.update(graphs.capture(vae, "vae"))
    prompt["video"] = {"class_type": "TurboTestImageSource", "inputs": {"key": "video"}}
    prompt["core"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["video", 0], "vae": vae}}
    prompt["turbo"] = {"class_type": "TurboVAEEncode", "inputs": {
        "pixels": ["video", 0], "vae": vae, "frame_count": frame_count, **chunk_widgets(**widgets)}}
    for name in ("core", "turbo"):
        prompt[f"{name}_px"] = {"class_type": "VAEDecode", "inputs": {"samples": [name, 0], "vae": vae}}
        prompt.update(graphs.capture([name, 0], name))
        prompt.update(graphs.capture([f"{name}_px", 0], f"{name}_px"))
    return run_ok(comfy, captured, prompt)


def decode_both(comfy, captured, models, family, latent, **widgets):
    SOURCES["latent"] = latent
    prompt, vae = vae_nodes(models, family)
    prompt.update(graphs.capture(vae, "vae"))
    prompt["latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "latent"}}
    prompt["core"] = {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": vae}}
    prompt["turbo"] = {"class_type": "TurboVAEDecode", "inputs": {
        "samples": ["latent", 0], "vae": vae, **chunk_widgets(**widgets)}}
    prompt.update(graphs.capture(["core", 0], "core"))
    prompt.update(graphs.capture(["turbo", 0], "turbo"))
    return run_ok(comfy, captured, prompt)


def assert_healthy(pixels):
    """Not constant, not saturated: a chunked-vs-whole comparison on these can fail."""
    assert pixels.std() > 0.1, pixels.std()
    assert ((pixels <= 0) | (pixels >= 1)).float().mean() < 0.2


def random_latent(family, frames, size, seed=0):
    """Unit-normal latents (what a sampler returns); both tiny VAEs decode them to a healthy spread."""
    channels, factor, scale = (128, 8, 32) if family in LTX_FAMILIES else (16, 4, 8)
    shape = (1, channels, 1 + (frames - 1) // factor, size // scale, size // scale)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ---- chunked / tiled against the whole call -------------------------------------------------------------

CASES = {  # family, frames, size, widgets: (chunks, tiles) they make
    "ltxv_temporal": ("ltxv", 129, 64, dict(frames=73, overlap=48)),  # 17 latents: 3 chunks of 10, overlap 6
    "ltxv_spatial": ("ltxv", 1, 512, dict(tile=384, tile_overlap=256)),  # 16x16 latents: 2x2 tiles of 12
    "wan_temporal": ("wan", 129, 16, dict(frames=109, overlap=92)),  # 33 latents: 2 chunks of 28, overlap 23
    # the tiny LTX-2 / 2.3 encoders (compress_*_res stages) look ~10 latent frames back: 2 chunks of 14, overlap 11
    "ltx2_temporal": ("ltx2", 129, 64, dict(frames=105, overlap=88)),
    "ltx2_spatial": ("ltx2", 1, 512, dict(tile=384, tile_overlap=256)),
    "ltx2_base8_temporal": ("ltx2_base8", 129, 64, dict(frames=105, overlap=88)),
    "ltx23_temporal": ("ltx23", 129, 64, dict(frames=105, overlap=88)),
    "ltx23_spatial": ("ltx23", 1, 512, dict(tile=384, tile_overlap=256)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_chunked_decode_matches_whole_decode(host, captured, tiny_models, case):
    family, frames, size, widgets = CASES[case]
    latent = random_latent(family, frames, size)
    out = decode_both(host, captured, tiny_models, family, latent, **widgets)
    core, turbo = out["core"], out["turbo"]
    assert_healthy(core)
    assert turbo.shape == core.shape == (frames, size, size, 3)
    floor = noise_floor(out["vae"], latent, family)
    difference = (turbo - core).abs().mean().item()
    assert difference <= TOLERANCE + floor, (difference, floor)


@pytest.mark.parametrize("case", sorted(CASES))
def test_chunked_encode_matches_whole_encode(host, captured, tiny_models, case):
    family, frames, size, widgets = CASES[case]
    out = encode_both(host, captured, tiny_models, family, smooth_video(frames, size, seed=1), **widgets)
    core, turbo = out["core"]["samples"], out["turbo"]["samples"]
    assert turbo.shape == core.shape
    relative = ((turbo - core).abs().mean() / core.abs().mean()).item()
    assert relative <= TOLERANCE, relative
    assert_healthy(out["core_px"])
    floor = noise_floor(out["vae"], core, family)
    pixel_difference = (out["turbo_px"] - out["core_px"]).abs().mean().item()
    assert pixel_difference <= TOLERANCE + floor, (pixel_difference, floor)


@pytest.mark.parametrize("family", ["ltxv", "wan", "ltx2", "ltx23"])
@pytest.mark.usefixtures("repeatable_decode_noise")
def test_single_chunk_equals_the_whole_call(host, captured, tiny_models, family):
    frames, size = (17, 64) if family in LTX_FAMILIES else (9, 16)
    out = encode_both(host, captured, tiny_models, family, smooth_video(frames, size, seed=2))  # budget 0: auto
    assert torch.allclose(out["turbo"]["samples"], out["core"]["samples"], atol=1e-6, rtol=0)
    decoded = decode_both(host, captured, tiny_models, family, out["core"]["samples"])
    assert_healthy(decoded["core"])
    assert torch.allclose(decoded["turbo"], decoded["core"], atol=1e-6, rtol=0)


# ---- frame counts ----------------------------------------------------------------------------------------

def test_bad_frame_count_names_the_count_and_the_nearest_valid_counts(host, captured, tiny_models):
    SOURCES["video"] = smooth_video(20, 64, seed=3)
    prompt, vae = vae_nodes(tiny_models, "ltxv")
    prompt["video"] = {"class_type": "TurboTestImageSource", "inputs": {"key": "video"}}
    prompt["turbo"] = {"class_type": "TurboVAEEncode", "inputs": {
        "pixels": ["video", 0], "vae": vae, "frame_count": "error", **chunk_widgets()}}
    prompt.update(graphs.capture(["turbo", 0], "turbo"))
    result = host.run(prompt)
    assert not result.ok
    message = result.execution_error["exception_message"]
    assert "pixels: 20 frames" in message and "17 and 25" in message and "'pad'" in message, message


@pytest.mark.parametrize("family", ["ltxv", "wan", "ltx2", "ltx23"])
@pytest.mark.usefixtures("repeatable_decode_noise")
def test_pad_decodes_back_to_exactly_the_frames_given(host, captured, tiny_models, family):
    frames, size, factor = (20, 64, 8) if family in LTX_FAMILIES else (11, 16, 4)  # neither is 1 + f k
    below = 1 + factor * ((frames - 1) // factor)
    above = below + factor
    video = smooth_video(frames, size, seed=4)
    SOURCES["video"] = video
    SOURCES["padded"] = torch.cat([video, video[-1:].expand(above - frames, -1, -1, -1)])  # last frame repeated
    SOURCES["trimmed"] = video[:below]
    prompt, vae = vae_nodes(tiny_models, family)
    for key in ("video", "padded", "trimmed"):
        prompt[key] = {"class_type": "TurboTestImageSource", "inputs": {"key": key}}
    prompt["core"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["padded", 0], "vae": vae}}
    prompt["core_trim"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["trimmed", 0], "vae": vae}}
    prompt["core_px"] = {"class_type": "VAEDecode", "inputs": {"samples": ["core", 0], "vae": vae}}
    for key in ("core", "core_trim", "core_px"):
        prompt.update(graphs.capture([key, 0], key))
    for mode in ("pad", "trim"):
        prompt[mode] = {"class_type": "TurboVAEEncode", "inputs": {
            "pixels": ["video", 0], "vae": vae, "frame_count": mode, **chunk_widgets()}}
        prompt[f"{mode}_px"] = {"class_type": "TurboVAEDecode", "inputs": {
            "samples": [mode, 0], "vae": vae, **chunk_widgets()}}
        prompt.update(graphs.capture([mode, 0], mode))
        prompt.update(graphs.capture([f"{mode}_px", 0], f"{mode}_px"))
    out = run_ok(host, captured, prompt)
    assert out["pad"]["turbovideo_frames"] == frames and "turbovideo_frames" not in out["trim"]
    assert torch.allclose(out["pad"]["samples"], out["core"]["samples"], atol=1e-6, rtol=0)
    assert out["pad_px"].shape == (frames, size, size, 3)
    assert_healthy(out["core_px"])
    assert torch.allclose(out["pad_px"], out["core_px"][:frames], atol=1e-6, rtol=0)
    assert torch.allclose(out["trim"]["samples"], out["core_trim"]["samples"], atol=1e-6, rtol=0)
    assert out["trim_px"].shape == (below, size, size, 3)


# ---- streaming to a file, interrupts --------------------------------------------------------------------

def to_video_nodes(vae, samples, **widgets):
    return {"to_video": {"class_type": "TurboVAEDecodeToVideo", "inputs": {
        "samples": samples, "vae": vae, "frame_rate": 24.0, "crf": 0, **chunk_widgets(**widgets)}}}


def read_frames(path):
    with av.open(str(path)) as container:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)])


@pytest.mark.parametrize("family", ["ltxv", "ltx2"])
@pytest.mark.usefixtures("repeatable_decode_noise")
def test_streamed_video_feeds_core_save_video(host, captured, tiny_models, family):
    SOURCES["latent"] = random_latent(family, 33, 64, seed=5)
    prompt, vae = vae_nodes(tiny_models, family)
    prompt["latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "latent"}}
    prompt.update(to_video_nodes(vae, ["latent", 0], frames=17, overlap=8))  # 5 latents: 2 chunks of 3
    prompt["images"] = {"class_type": "TurboVAEDecode", "inputs": {
        "samples": ["latent", 0], "vae": vae, **chunk_widgets(frames=17, overlap=8)}}
    prompt["save"] = {"class_type": "SaveVideo", "inputs": {
        "video": ["to_video", 0], "filename_prefix": f"turbo_vae_test_{family}/clip", "format": "auto",
        "codec": "auto"}}
    prompt.update(graphs.capture(["to_video", 0], "video"))
    prompt.update(graphs.capture(["images", 0], "images"))
    out = run_ok(host, captured, prompt)
    assert out["video"].get_frame_count() == 33 and out["video"].get_dimensions() == (64, 64)
    saved = sorted((host.work_dir / "output" / f"turbo_vae_test_{family}").glob("clip_*.mp4"))
    assert len(saved) == 1, saved
    frames = read_frames(saved[0]).float() / 255.0
    assert frames.shape == (33, 64, 64, 3)
    assert_healthy(out["images"])
    # yuv420p keeps colour at half resolution, but crf 0 keeps brightness (BT.601 luma) nearly exact
    luma = lambda rgb: rgb @ torch.tensor([0.299, 0.587, 0.114])
    difference = (luma(frames) - luma(out["images"])).abs().mean().item()
    assert difference < 0.02, difference
    assert (luma(frames) - luma(out["images"].roll(8, 0))).abs().mean() > 0.05  # order matters


def test_interrupt_between_chunks_stops_the_streaming_decode(host, captured, tiny_models):
    import comfy.model_management
    import comfy.utils

    ticks = []

    def press_stop_after_first_piece(value, total, preview, node_id=None):
        ticks.append((value, total))
        comfy.model_management.interrupt_current_processing()

    SOURCES["latent"] = random_latent("ltxv", 65, 64, seed=6)
    prompt, vae = vae_nodes(tiny_models, "ltxv")
    prompt["latent"] = {"class_type": "TurboTestLatentSource", "inputs": {"key": "latent"}}
    prompt.update(to_video_nodes(vae, ["latent", 0], frames=17, overlap=8))  # 9 latents: 4 chunks of 3, overlap 1
    before = set((host.work_dir / "temp").rglob("*.mp4"))
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(press_stop_after_first_piece)
    try:
        result = host.run(prompt)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        comfy.model_management.interrupt_current_processing(False)
    assert not result.ok
    assert any(event == "execution_interrupted" for event, _ in result.messages), result.describe()
    assert ticks == [(1, 4)], f"decoding went on after the stop: {ticks}"
    assert set((host.work_dir / "temp").rglob("*.mp4")) == before, "a partial video file was left behind"


# ---- bookkeeping on a stand-in VAE that any cut leaves exact --------------------------------------------

class PointwiseVideoVAE:
    """The comfy.sd.VAE surface the driver uses, with maps that commute with chunking and tiling.

    decode: latent frame 0 -> one frame; latent i >= 1 -> `factor` frames, phase j a different
    per-pixel function of latent i alone (phase factor-1 for the first latent of any call, as a
    causal first latent stands for the last frame of its group); nearest upsampling by `scale`.
    encode: frames 0, f, 2f, ... average-pooled by `scale`, plus their squares (so not linear).
    """

    latent_dim, latent_channels, vae_dtype, disable_offload = 3, 6, torch.float32, False

    def __init__(self, factor=8, scale=4):
        import comfy.model_patcher

        self.factor, self.scale, self.device = factor, scale, torch.device("cpu")
        self.first_stage_model = torch.nn.Identity()
        self.patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), self.device, self.device)
        self.decode_calls = 0

    def temporal_compression_decode(self):
        return self.factor

    def spacial_compression_decode(self):
        return self.scale

    def memory_used_decode(self, shape, dtype):
        return 1000.0 * shape[2] * shape[3] * shape[4]

    def memory_used_encode(self, shape, dtype):
        return 10.0 * shape[2] * shape[3] * shape[4]

    def vae_encode_crop_pixels(self, pixels):
        return pixels

    def _frame(self, z, phase):  # z (B, C, h, w) -> (B, h*s, w*s, 3)
        rgb = torch.sigmoid(z[:, :3] * (1 + 0.25 * phase) + z[:, 3:6] * 0.1 * phase)
        return rgb.repeat_interleave(self.scale, 2).repeat_interleave(self.scale, 3).movedim(1, -1)

    def decode(self, z):
        self.decode_calls += 1
        frames = [self._frame(z[:, :, 0], self.factor - 1)]
        frames += [self._frame(z[:, :, i], j) for i in range(1, z.shape[2]) for j in range(self.factor)]
        return torch.stack(frames, 1)

    def encode(self, pixels):  # (n, H, W, 3) -> (1, 6, t, h, w)
        x = pixels[:: self.factor].movedim(-1, 1)
        pooled = torch.nn.functional.avg_pool2d(torch.cat([x, x * x], 1), self.scale)
        return pooled.movedim(0, 1).unsqueeze(0)


def chunked_vae_module(host):
    return sys.modules[host.pack_module.__name__ + ".patches.chunked_vae"]


def test_chunks_tiles_and_batches_reassemble_exactly(host):
    cv = chunked_vae_module(host)
    vae = PointwiseVideoVAE()
    latent = torch.randn(2, 6, 11, 7, 5)
    whole = vae.decode(latent).reshape(-1, 28, 20, 3)
    options = cv.ChunkOptions(budget_bytes=1e12, frames=4, tile=3, overlap_frames=2, overlap_tile=1)
    plan = cv.plan_decode(vae, latent.shape, options)
    assert len(plan.chunks) > 2 and len(plan.tiles) > 2
    assert torch.allclose(cv.decode(vae, latent, plan), whole, atol=1e-6, rtol=0)
    blocks = list(cv.decode_blocks(vae, latent, plan, frames=50))  # each item cut to 50 of 81 frames
    assert len(blocks) > 2
    assert torch.allclose(torch.cat(blocks), torch.cat([whole[:50], whole[81:131]]), atol=1e-6, rtol=0)
    pixels = torch.rand(81, 28, 20, 3)
    plan = cv.plan_encode(vae, pixels.shape, options)
    assert torch.allclose(cv.encode(vae, pixels, plan), vae.encode(pixels), atol=1e-6, rtol=0)


def test_sizes_follow_the_memory_budget(host):
    cv = chunked_vae_module(host)
    vae = PointwiseVideoVAE()
    shape, factor, scale = (1, 6, 17, 8, 8), 8, 4
    per_pixel_frame = (8 * scale) ** 2 * 3 * 4  # the float32 output a chunk also holds

    def cost(t, h, w):
        return vae.memory_used_decode((1, 6, t, h, w), None) + (1 + factor * (t - 1)) * per_pixel_frame * h * w / 64

    for budget, expected in ((cost(17, 8, 8), (17, 8, 8)), (cost(6, 8, 8), (6, 8, 8)), (cost(3, 4, 4), (3, 4, 4))):
        plan = cv.plan_decode(vae, shape, cv.ChunkOptions(budget_bytes=budget))
        assert (plan.sizes.frames, plan.sizes.height, plan.sizes.width) == expected
        latent = torch.randn(shape)
        assert torch.allclose(cv.decode(vae, latent, plan), vae.decode(latent)[0], atol=1e-6, rtol=0)


def test_interrupt_is_checked_before_every_vae_call(host):
    """On the stand-in VAE (no comfy ops inside that might check the flag themselves)."""
    import comfy.model_management

    cv = chunked_vae_module(host)
    vae = PointwiseVideoVAE()
    latent = torch.randn(1, 6, 9, 4, 4)
    plan = cv.plan_decode(vae, latent.shape, cv.ChunkOptions(budget_bytes=1e12, frames=3, overlap_frames=1))
    blocks = cv.decode_blocks(vae, latent, plan)
    next(blocks)
    comfy.model_management.interrupt_current_processing()
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            next(blocks)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert vae.decode_calls == 1


def test_a_stop_before_the_first_frame_surfaces_as_the_stop_and_leaves_no_file(host, tmp_path):
    stream = sys.modules[host.pack_module.__name__ + ".patches.video_stream"]
    path = tmp_path / "never_written.mp4"
    with pytest.raises(KeyboardInterrupt):
        with stream.VideoFileWriter(str(path), frame_rate=24):
            raise KeyboardInterrupt  # what an interrupt raised by the first chunk's VAE call looks like
    assert not path.exists()
