"""Nodes that exist only inside the test session: a text-free conditioning source and a capture sink.

Registered by the host fixture, never by the pack. The capture node keeps what flows into it so a
test can assert on tensors that a real graph produced.
"""
import torch

CAPTURED: dict = {}


class TurboTestConditioning:
    """Random text-encoder output (what a T5/umt5 encoder would give), with the mask LTX needs."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                "width": ("INT", {"default": 4096, "min": 1, "max": 8192}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                "attention_mask": ("BOOLEAN", {"default": True}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "_for_testing"

    def make(self, tokens, width, seed, attention_mask):
        generator = torch.Generator().manual_seed(seed)
        embedding = torch.randn(1, tokens, width, generator=generator)
        extra = {"attention_mask": torch.ones(1, tokens, dtype=torch.long)} if attention_mask else {}
        return ([[embedding, extra]],)


def core_runs_ltx2_connectors() -> bool:
    """Core 0.29 runs LTX-2's text connectors inside the DiT (LTXAVModel.preprocess_text_embeds) for
    conditioning marked `unprocessed_ltxav_embeds`; core 0.8.0 runs them in the text encoder."""
    from turbovideo.patches.core_compat import ltxav_dit_has_text_connectors  # the pack under its test alias

    return ltxav_dit_has_text_connectors()


class TurboTestLTX2Conditioning:
    """Random LTX-2 text-encoder output in the form this host's Gemma encoder gives it: on core 0.29 the
    projected Gemma states (width `unprocessed_width`, marked unprocessed_ltxav_embeds, the DiT's connectors
    run on them); on 0.8.0 the connector outputs (width `processed_width` = [video | audio]). No attention
    mask (core's encoder passes none); frame_rate as LTXVConditioning sets it."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "tokens": ("INT", {"default": 7, "min": 1, "max": 512}),
                "unprocessed_width": ("INT", {"default": 3840, "min": 1, "max": 8192}),
                "processed_width": ("INT", {"default": 7680, "min": 1, "max": 16384}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                "frame_rate": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "_for_testing"

    def make(self, tokens, unprocessed_width, processed_width, seed, frame_rate):
        generator = torch.Generator().manual_seed(seed)
        if core_runs_ltx2_connectors():
            embedding = torch.randn(1, tokens, unprocessed_width, generator=generator)
            return ([[embedding, {"unprocessed_ltxav_embeds": True, "frame_rate": frame_rate}]],)
        embedding = torch.randn(1, tokens, processed_width, generator=generator)
        return ([[embedding, {"frame_rate": frame_rate}]],)


class TurboTestNeutralConditioning:
    """The model family's 'no prompt' conditioning (patches/families), as TurboVSRUpscale uses it."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "_for_testing"

    def make(self, model):
        from turbovideo.patches.vsr_upscale import neutral_conditioning  # the pack under its test alias

        return (neutral_conditioning(model),)


class TurboTestCapture:
    """Stores its input under `key` in CAPTURED; an output node so the graph runs up to it."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",), "key": ("STRING", {"default": "out"})}}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        return True

    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    CATEGORY = "_for_testing"

    def capture(self, value, key):
        CAPTURED[key] = value
        return {}


class TurboTestInterruptAfter:
    """MODEL -> MODEL that counts model calls and presses the stop button after the `calls`-th returns."""

    calls_seen = 0

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "calls": ("INT", {"default": 2, "min": 1, "max": 100})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"

    def patch(self, model, calls):
        import comfy.model_management
        import comfy.patcher_extension

        TurboTestInterruptAfter.calls_seen = 0

        # Pressed after the call returns: comfy's own ops check the flag inside a call, so only the
        # sampler loop (between steps) can stop before the next call's wrapper runs.
        def count_then_interrupt(executor, *args, **kwargs):
            TurboTestInterruptAfter.calls_seen += 1
            out = executor(*args, **kwargs)
            if TurboTestInterruptAfter.calls_seen >= calls:
                comfy.model_management.interrupt_current_processing()
            return out

        patched = model.clone()
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "turbo_test_interrupt",
                                     count_then_interrupt)
        return (patched,)


class TurboTestBlockProbe:
    """MODEL -> MODEL with a block-replace patch on block 0 that records the keys core puts in `extra`."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"

    def patch(self, model):
        def probe(args, extra):
            CAPTURED["block_probe_extra_keys"] = sorted(extra)
            CAPTURED["block_probe_args_keys"] = sorted(args)
            CAPTURED["block_probe_options_keys"] = sorted(args.get("transformer_options", {}))
            return extra["original_block"](args)

        patched = model.clone()
        patched.set_model_patch_replace(probe, "dit", "double_block", 0)
        return (patched,)


SOURCES: dict = {}


class TurboTestImageSource:
    """Outputs the tensor a test put in SOURCES[key] as an IMAGE."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"key": ("STRING", {"default": "video"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "get"
    CATEGORY = "_for_testing"

    def get(self, key):
        return (SOURCES[key],)


class TurboTestLatentSource(TurboTestImageSource):
    """Outputs SOURCES[key] as a LATENT."""

    RETURN_TYPES = ("LATENT",)

    def get(self, key):
        return ({"samples": SOURCES[key]},)


class TurboTestMaskSource(TurboTestImageSource):
    """Outputs SOURCES[key] as a MASK."""

    RETURN_TYPES = ("MASK",)


TEST_NODES = {
    "TurboTestImageSource": TurboTestImageSource,
    "TurboTestLatentSource": TurboTestLatentSource,
    "TurboTestMaskSource": TurboTestMaskSource,
    "TurboTestInterruptAfter": TurboTestInterruptAfter,
    "TurboTestBlockProbe": TurboTestBlockProbe,
    "TurboTestConditioning": TurboTestConditioning,
    "TurboTestLTX2Conditioning": TurboTestLTX2Conditioning,
    "TurboTestNeutralConditioning": TurboTestNeutralConditioning,
    "TurboTestCapture": TurboTestCapture,
}
