"""Work that must stay bounded (issue 18: the 'hung' cases and the atomic saves), in the real ComfyUI.

- An output over the stated limits (2^31 output pixels; an IMAGE batch larger than the free RAM) is refused
  before any VAE or model call, naming the limit and the streaming node to use instead.
- The stop button ends a big TurboVSRUpscale within one model call or one VAE call (+ slack for the queue),
  wherever it is pressed.
- TurboSaveQuantized writes under a temporary name: a failure mid-save leaves no file under the final name;
  a good save loads back with TurboLoadQuantized.
"""
import importlib
import threading
import time

import pytest
import torch

from host import graphs
from host.hostile import Case, assert_clear_error, assert_still_serving, record, smooth_frames, vsr_prompt
from host.test_only_nodes import SOURCES

pytestmark = pytest.mark.host

HUNG = "hung"
SLACK_S = 2.5  # queue polling, freeing the run's memory, a loaded 2-core machine


def pack(comfy, name):
    return importlib.import_module(f"{comfy.pack_module.__name__}.{name}")


class Calls:
    """Durations of every VAE encode/decode and diffusion-model call; press_at(kind, n) presses the stop button
    50 ms into the n-th call of that kind and notes when."""

    def __init__(self):
        self.durations = {"encode": [], "decode": [], "model": []}
        self.starts = []
        self.trigger, self.pressed = None, None

    def all(self) -> list:
        return [d for durations in self.durations.values() for d in durations]

    def press_at(self, kind: str, count: int) -> None:
        self.trigger, self.pressed = (kind, count), None
        self.starts.clear()
        for durations in self.durations.values():
            durations.clear()

    def _press(self):
        self.pressed = time.monotonic()
        importlib.import_module("comfy.model_management").interrupt_current_processing()

    def timed(self, kind, original):
        def call(*args, **kwargs):
            if self.trigger == (kind, len(self.durations[kind]) + 1):
                threading.Timer(0.05, self._press).start()
            start = time.monotonic()
            self.starts.append(start)
            try:
                return original(*args, **kwargs)
            finally:
                self.durations[kind].append(time.monotonic() - start)

        return call


@pytest.fixture
def calls(monkeypatch):
    sd, ltx = importlib.import_module("comfy.sd"), importlib.import_module("comfy.ldm.lightricks.model")
    recorder = Calls()
    for owner, name, kind in ((sd.VAE, "encode", "encode"), (sd.VAE, "decode", "decode"),
                              (ltx.LTXVModel, "forward", "model")):
        monkeypatch.setattr(owner, name, recorder.timed(kind, getattr(owner, name)))
    return recorder


def decode_prompt(tiny_models, latent, node="TurboVAEDecode"):
    SOURCES["hostile_latent"] = latent
    inputs = {"samples": ["lat", 0], "vae": ["ckpt", 2], "memory_budget_mb": 0, "chunk_frames": 0,
              "chunk_overlap": 24, "tile_size": 0, "tile_overlap": 64}
    if node == "TurboVAEDecodeToVideo":
        inputs.update(frame_rate=24.0, crf=19)
    prompt = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_models["ltxv_checkpoint"]}},
              "lat": {"class_type": "TurboTestLatentSource", "inputs": {"key": "hostile_latent"}},
              "node": {"class_type": node, "inputs": inputs}}
    if node == "TurboVAEDecode":
        prompt.update(graphs.capture(["node", 0], "images"))
    return prompt


def test_an_output_over_the_pixel_limit_is_refused_before_any_work(comfy, tiny_models, calls):
    """34 latent frames of 68 x 120 cells decode to 265 frames of 3840 x 2176: over 2^31 pixels."""
    latent = torch.randn(1, 128, 34, 68, 120)
    for node in ("TurboVAEDecode", "TurboVAEDecodeToVideo"):
        case = Case(f"oversize-{node}", HUNG, ("samples: the output would be 265 frames of 3840x2176 px",
                                               "over the limit of 2\\^31"))
        start = time.monotonic()
        assert_clear_error(comfy, decode_prompt(tiny_models, latent, node), case)
        assert not calls.all(), "the VAE ran before the size was refused"
        assert time.monotonic() - start < 60


def test_an_image_batch_larger_than_the_free_ram_is_refused_naming_the_streaming_node(comfy, tiny_models, calls,
                                                                                      monkeypatch):
    size_limits = pack(comfy, "patches.size_limits")

    class Little:
        available = 1 << 20  # 1 MiB free

    monkeypatch.setattr(size_limits.psutil, "virtual_memory", lambda: Little())
    case = Case("vsr-image-over-ram", HUNG, ("scale: the output IMAGE batch", "of RAM", "TurboVSRUpscaleToVideo"))
    assert_clear_error(comfy, vsr_prompt(tiny_models, frames=smooth_frames(9, 64, 64, seed=1), scale=8.0), case)
    case = Case("decode-image-over-ram", HUNG, ("samples: the output IMAGE batch", "TurboVAEDecodeToVideo"))
    assert_clear_error(comfy, decode_prompt(tiny_models, torch.randn(1, 128, 2, 8, 8)), case)
    assert not calls.all()


# ---- the stop button --------------------------------------------------------------------------------------

def big_vsr(tiny_models):
    """17 frames of 64 x 64 at scale 2: 128 px, 4 x 4 latent cells, 3 x 3 tiles of 2, 2 passes of 2 steps."""
    return vsr_prompt(tiny_models, frames=smooth_frames(17, 64, 64, seed=9), scale=2.0, steps=2, tile_size=2,
                      tile_overlap=1, factorized=True, resize_method="lanczos")


@pytest.mark.slow
@pytest.mark.parametrize("kind,count", [("encode", 1), ("model", 5), ("decode", 1)])
def test_the_stop_button_lands_within_one_model_or_vae_call(comfy, tiny_models, calls, kind, count):
    """Pressed 50 ms into the first encode, the fifth model call or the first decode: at most one more VAE or model
    call starts (the press may fall just after the call it aimed at), and the run ends within the longest single
    VAE or model call of the run (+ slack for the queue)."""
    management = importlib.import_module("comfy.model_management")
    calls.press_at(kind, count)
    try:
        result = comfy.run(big_vsr(tiny_models))
    finally:
        management.interrupt_current_processing(False)
    ended = time.monotonic()
    assert calls.pressed is not None, f"no {kind} call #{count} happened"
    assert not result.ok and "interrupt" in str(result.messages).lower(), result.describe()
    started_after = sum(1 for start in calls.starts if start > calls.pressed)
    assert started_after <= 1, f"{started_after} VAE / model calls started after the stop was pressed"
    latency, longest = ended - calls.pressed, max(calls.all())
    assert latency <= longest + SLACK_S, f"the stop landed {latency:.2f} s after the press; the longest single VAE " \
                                         f"or model call took {longest:.2f} s"
    assert_still_serving(comfy)
    record(Case(f"stop-at-{kind}-{count}", HUNG, ()), "correct result")


# ---- atomic saves -----------------------------------------------------------------------------------------

def save_prompt(tiny_models, prefix):
    return {"unet": {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_models["ltxv_dit"],
                                                            "weight_dtype": "default"}},
            "q": {"class_type": "TurboQuantizeINT8", "inputs": {"model": ["unet", 0], "layers": "all",
                                                                "granularity": "per_channel", "backend": "auto"}},
            "save": {"class_type": "TurboSaveQuantized", "inputs": {"model": ["q", 0], "filename_prefix": prefix}}}


def test_a_failed_save_leaves_no_file_and_a_good_one_loads_back(comfy, tiny_models, captured, monkeypatch):
    utils = importlib.import_module("comfy.utils")
    folder = comfy.work_dir / "output" / "hostile_saves"
    original = utils.save_torch_file

    def dies_half_way(state, path, metadata=None):
        original(state, path, metadata=metadata)
        with open(path, "r+b") as handle:
            handle.truncate(1000)
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(utils, "save_torch_file", dies_half_way)
    result = comfy.run(save_prompt(tiny_models, "hostile_saves/int8"))
    assert not result.ok and "No space left" in str(result.execution_error), result.describe()
    assert not list(folder.glob("*")) if folder.exists() else True, list(folder.glob("*"))
    assert not list(folder.glob(".*")) if folder.exists() else True
    monkeypatch.setattr(utils, "save_torch_file", original)
    assert comfy.run(save_prompt(tiny_models, "hostile_saves/int8")).ok
    saved = sorted(folder.glob("int8_*.safetensors"))
    assert len(saved) == 1 and not list(folder.glob(".*")), list(folder.iterdir())
    comfy.add_model_folder("diffusion_models", folder)
    prompt = {"load": {"class_type": "TurboLoadQuantized", "inputs": {"unet_name": saved[0].name}},
              **graphs.capture(["load", 0], "model")}
    captured.clear()
    result = comfy.run(prompt)
    assert result.ok, result.describe()
    assert captured["model"] is not None
    assert_still_serving(comfy)
    record(Case("save-dies-half-way", "silent wrong output", ()), "correct result")
