"""TurboVSR factorized conditioning, auto tile size, tile layout picture and streamed VIDEO output, in the real
ComfyUI on the tiny LTX-Video checkpoint (DiT width 64, tiny 32x VAE) and, where the test takes `family`, also
on the tiny LTX-2 checkpoint (audio-video DiT width 16 run video-only, LTX-2 VAE).

Factorized: pass 1 (the first frame as a 1-frame video) is exactly the 1-frame upscale; pass 2 keeps it
frozen in latent frame 0 (also when tiled in space and time, and with a conditioner). Auto tile: the
model calls have the side samplers/tile_budget.py picks for the model's own estimate, smaller for a
smaller budget. Layout: white tile borders exactly where the plan puts them. VIDEO: Save Video reads
back with the right frames and size; a stop during the decode leaves no file.
"""
import importlib

import av
import pytest
import torch

from host import graphs
from host.test_only_nodes import SOURCES
from host.test_vsr_host import FAMILIES, WIDTH, lr_video

pytestmark = pytest.mark.host
TRAINING_FREE = "none (training-free SDEdit)"
MIB = 1024 * 1024


def pack(comfy, name):
    return importlib.import_module(f"{comfy.pack_module.__name__}.{name}")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def loaded(comfy, tiny_models, family):
    """(MODEL, VAE) of the family's tiny checkpoint, loaded by the core loader."""
    checkpoint = tiny_models[f"{family}_checkpoint"]
    prompt = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}}
    prompt.update(graphs.capture(["ckpt", 0], "model"))
    prompt.update(graphs.capture(["ckpt", 2], "vae"))
    from host.test_only_nodes import CAPTURED

    result = comfy.run(prompt)
    assert result.ok, result.describe()
    return CAPTURED["model"], CAPTURED["vae"]


def settings(comfy, tile=4, segment=0, **changes):
    vsr, tiled = pack(comfy, "patches.vsr_upscale"), pack(comfy, "patches.tiled_model")
    tiling = tiled.TilingSettings((tile, tile), 2, segment, 2, "cosine", 1) if tile else None
    base = dict(scale=2.0, steps=2, strength=0.6, seed=11, resize_method="bicubic", color_correction="none",
                tiling=tiling, factorized=True)
    return vsr.UpscaleSettings(**{**base, **changes})


def latents(comfy, loaded, video, upscale_settings, conditioner=None):
    model, vae = loaded
    with torch.inference_mode():
        return pack(comfy, "patches.vsr_upscale").upscale_latents(model, vae, video, upscale_settings,
                                                                    conditioner=conditioner)


@pytest.mark.parametrize("frames,segment", [(9, 0), (33, 3)])
def test_pass_one_is_the_image_upscale_and_stays_frozen(comfy, loaded, frames, segment):
    video = lr_video(frames, 64, 96, seed=frames)
    chosen = settings(comfy, segment=segment)
    image = latents(comfy, loaded, video[:1], chosen)
    assert image.first is None and image.samples.shape[2] == 1  # one frame: one pass
    both = latents(comfy, loaded, video, chosen)
    assert torch.equal(both.first, image.samples)
    assert torch.equal(both.samples[:, :, :1], image.samples)
    plain = latents(comfy, loaded, video, settings(comfy, segment=segment, factorized=False))
    assert (both.samples[:, :, 1:] - plain.samples[:, :, 1:]).abs().mean() > 1e-3, "pass 2 must see the HR frame"


def test_the_mask_freezes_frame_zero_during_sampling(comfy, loaded):
    """Before the exact write-back: Euler keeps frame 0 only because the denoise mask holds it."""
    vsr = pack(comfy, "patches.vsr_upscale")
    model, vae = loaded
    video = lr_video(9, 64, 64, seed=3)
    chosen = settings(comfy)
    with torch.inference_mode():
        frames = vsr.LRFrames(video, (128, 128), "bicubic", 32, 8)
        lr = vsr.encode_frames(vae, frames)
        first = torch.randn(lr[:, :, :1].shape, generator=torch.Generator().manual_seed(7)) * lr.std()
        cond = vsr.neutral_conditioning(model)
        raw = vsr.denoise_factorized(model, lr, first, chosen, cond, cond)
    scale = float(first.abs().max())
    assert float((raw[:, :, 0] - first[:, :, 0]).abs().max()) <= 1e-5 * scale
    assert (raw[:, :, 1:] - lr[:, :, 1:]).abs().mean() > 1e-3  # the rest was denoised


def test_conditioner_mode_is_factorized_too(comfy, loaded, family):
    module = pack(comfy, "models.vsr_conditioner")
    torch.manual_seed(5)
    conditioner = module.VSRConditioner(WIDTH[family])
    with torch.no_grad():
        conditioner.scale.fill_(0.8)
    video = lr_video(9, 64, 64, seed=6)
    image = latents(comfy, loaded, video[:1], settings(comfy), conditioner)
    plain_image = latents(comfy, loaded, video[:1], settings(comfy))
    assert (image.samples - plain_image.samples).abs().mean() > 1e-3, "the conditioner must act in pass 1"
    both = latents(comfy, loaded, video, settings(comfy), conditioner)
    assert torch.equal(both.samples[:, :, :1], image.samples)


def node_inputs(**widgets):
    inputs = {"model": ["ckpt", 0], "vae": ["ckpt", 2], "images": ["src", 0], "scale": 2.0, "steps": 2,
              "strength": 0.5, "seed": 3, "resize_method": "bicubic", "color_correction": "wavelet",
              "factorized": True, "tile_size": 0, "memory_budget_mb": 0, "tile_overlap": 2, "segment_length": 0,
              "segment_overlap": 2, "weights": "cosine", "tile_batch": 1, "vsr_conditioner": TRAINING_FREE, "cfg": 1.0}
    inputs.update(widgets)
    return inputs


def vsr_prompt(tiny_models, node="TurboVSRUpscale", family="ltxv", **widgets):
    checkpoint = tiny_models[f"{family}_checkpoint"]
    return {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
            "src": {"class_type": "TurboTestImageSource", "inputs": {"key": "video"}},
            "vsr": {"class_type": node, "inputs": node_inputs(**widgets)}}


def model_call_shapes(comfy, prompt, monkeypatch):
    model = importlib.import_module("comfy.ldm.lightricks.model")
    shapes = []
    forward = model.LTXVModel.forward

    def recording(self, x, *args, **kwargs):
        video = x[0] if isinstance(x, (list, tuple)) else x  # LTX-2's forward takes [video, audio]
        shapes.append(tuple(video.shape))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(model.LTXVModel, "forward", recording)
    result = comfy.run(prompt)
    monkeypatch.setattr(model.LTXVModel, "forward", forward)
    assert result.ok, result.describe()
    return shapes


def test_auto_tile_follows_the_budget(comfy, tiny_models, loaded, family, captured, monkeypatch):
    budget = pack(comfy, "samplers.tile_budget")
    SOURCES["video"] = lr_video(9, 128, 128, seed=8)  # 2x: 8 x 8 latent cells, 2 latent frames
    cost = budget.model_call_cost(loaded[0].model.memory_required, 1, 128)
    sides = []
    for mb in (64, 2, 1):
        prompt = vsr_prompt(tiny_models, family=family, factorized=False, memory_budget_mb=mb)
        prompt.update(graphs.capture(["vsr", 0], "out"))
        shapes = model_call_shapes(comfy, prompt, monkeypatch)
        expected = budget.largest_tile((2, 8, 8), mb * MIB, cost, overlap=2).side
        windows = pack(comfy, "patches.tiled_model").TilingSettings((expected, expected), 2).plan((2, 8, 8))
        window_sides = {max(w.rows[1] - w.rows[0], w.cols[1] - w.cols[0]) for w in windows}  # the plan evens them
        assert {max(s[3:]) for s in shapes} == window_sides, (mb, expected, shapes)
        sides.append(expected)
        assert captured["out"].shape == (9, 256, 256, 3)
    # whole frame at 64 MiB, smaller tiles below (how many budgets bite depends on the model's own estimate)
    assert sides[0] == 8 and sides[-1] < 8 and sides == sorted(sides, reverse=True), sides


def test_tiled_model_auto_tile_follows_the_budget(comfy, tiny_models, monkeypatch):
    from host.test_tiled_model_host import ltx_prompt  # 8 x 8 latent cells, 5 latent frames

    sizes = []
    for mb in (64, 3):
        shapes = model_call_shapes(comfy, ltx_prompt(tiny_models, dict(tile=0, overlap=2, budget_mb=mb)),
                                   monkeypatch)
        sizes.append(max(max(s[3:]) for s in shapes))
    assert sizes[0] == 8 and sizes[1] < 8, sizes


def test_layout_draws_every_tile_border(comfy):
    tiling, preview = pack(comfy, "samplers.tiling"), pack(comfy, "patches.tile_preview")
    cell = 4
    windows = tiling.plan_windows((5, 6, 7), (4, 4), 2, segment=3, segment_overlap=2)
    frame = torch.rand(6 * cell, 7 * cell, 3)
    image = preview.draw_layout(frame, windows, cell, time_factor=8, frames=33)
    segments = sorted({w.frames for w in windows})
    assert image.shape == (1, 6 * cell + preview.STRIP_PX * len(segments), 7 * cell, 3)
    picture = image[0, :6 * cell]
    expected = torch.zeros(6 * cell, 7 * cell, dtype=torch.bool)
    tiles = sorted({(w.rows, w.cols) for w in windows})
    for (top, bottom), (left, right) in tiles:
        box = torch.zeros_like(expected)
        box[top * cell:bottom * cell, left * cell:right * cell] = True
        inner = torch.zeros_like(expected)
        inner[top * cell + 1:bottom * cell - 1, left * cell + 1:right * cell - 1] = True
        expected |= box & ~inner
    white = (picture == 1.0).all(dim=-1)
    assert torch.equal(white, expected)
    assert len(tiles) == 2 * 3  # rows (0, 4), (2, 6); columns (0, 4), (2, 6), (4, 7)
    # the top-left cell belongs to tile 0 alone: half frame, half its colour
    torch.testing.assert_close(picture[1, 1], 0.5 * frame[1, 1] + 0.5 * preview.PALETTE[0], atol=1e-6, rtol=0)
    # segment 1's band: black at its dropped first latent, lit at its next latent
    band = image[0, 6 * cell + preview.STRIP_PX:6 * cell + 2 * preview.STRIP_PX]
    latent_of_column = [0 if f == 0 else (f - 1) // 8 + 1 for f in (torch.arange(7 * cell) * 33 // (7 * cell)).tolist()]
    first = segments[1][0]
    dropped = [c for c, latent in enumerate(latent_of_column) if latent == first]
    after = [c for c, latent in enumerate(latent_of_column) if latent == first + 1]
    assert dropped and after
    assert float(band[:, dropped].abs().max()) == 0.0
    assert float(band[:, after].amax(dim=(0, 2)).min()) > 0.05


def test_vsr_node_gives_the_layout_image(comfy, tiny_models, captured):
    SOURCES["video"] = lr_video(9, 96, 64, seed=9)
    prompt = vsr_prompt(tiny_models, tile_size=3)
    prompt.update(graphs.capture(["vsr", 1], "layout"))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    layout = captured["layout"]
    assert layout.shape == (1, 192 + 12, 128, 3)
    white = (layout[0, :192] == 1.0).all(dim=-1)
    assert white[:, 0].all() and white[0, :].all() and white[:, 64].any()  # 2 x 2 tiles of 3 cells, overlap 2


def read_frames(path):
    with av.open(str(path)) as container:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)])


@pytest.mark.parametrize("family_name", FAMILIES)
def test_video_output_saves_and_reads_back(comfy, tiny_models, captured, family_name):
    SOURCES["video"] = lr_video(10, 64, 96, seed=10)
    prompt = vsr_prompt(tiny_models, node="TurboVSRUpscaleToVideo", family=family_name, tile_size=3,
                        frame_rate=12.0, crf=0)
    prompt["images"] = {"class_type": "TurboVSRUpscale", "inputs": node_inputs(tile_size=3)}
    prompt["save"] = {"class_type": "SaveVideo", "inputs": {
        "video": ["vsr", 0], "filename_prefix": f"turbo_vsr_test_{family_name}/clip", "format": "auto",
        "codec": "auto"}}
    prompt.update(graphs.capture(["images", 0], "images"))
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    saved = sorted((comfy.work_dir / "output" / f"turbo_vsr_test_{family_name}").glob("clip_*.mp4"))
    assert len(saved) == 1, saved
    frames = read_frames(saved[0]).float() / 255.0
    assert frames.shape == (10, 128, 192, 3)
    luma = lambda rgb: rgb @ torch.tensor([0.299, 0.587, 0.114])
    assert (luma(frames) - luma(captured["images"])).abs().mean() < 0.02  # the same frames as the IMAGE node


def test_stop_during_the_streamed_decode_leaves_no_file(comfy, tiny_models, monkeypatch):
    management, sd = importlib.import_module("comfy.model_management"), importlib.import_module("comfy.sd")
    chunked = pack(comfy, "patches.chunked_vae")
    options = chunked.ChunkOptions
    # 17 frames = 3 latents; decoded as 2 chunks of 2 latents, so the first block is written before the stop
    monkeypatch.setattr(chunked, "ChunkOptions", lambda **given: options(**given, frames=2, overlap_frames=1))
    decodes = []
    decode = sd.VAE.decode

    def press_stop_at_second(self, *args, **kwargs):
        decodes.append(1)
        if len(decodes) == 2:
            management.interrupt_current_processing()
        return decode(self, *args, **kwargs)

    SOURCES["video"] = lr_video(17, 64, 64, seed=12)
    before = set((comfy.work_dir / "temp").rglob("*.mp4"))
    monkeypatch.setattr(sd.VAE, "decode", press_stop_at_second)
    try:
        result = comfy.run(vsr_prompt(tiny_models, node="TurboVSRUpscaleToVideo", factorized=False, frame_rate=24.0,
                                      crf=19))
    finally:
        management.interrupt_current_processing(False)
    assert not result.ok
    assert any(event == "execution_interrupted" for event, _ in result.messages), result.describe()
    assert decodes == [1, 1]
    assert set((comfy.work_dir / "temp").rglob("*.mp4")) == before, "a partial video file was left behind"


def test_odd_output_size_is_refused_by_the_video_node(comfy, tiny_models):
    SOURCES["video"] = lr_video(1, 33, 64, seed=1)
    result = comfy.run(vsr_prompt(tiny_models, node="TurboVSRUpscaleToVideo", scale=1.0, frame_rate=24.0, crf=19))
    assert not result.ok and "scale" in str(result.execution_error) and "even" in str(result.execution_error)
