"""Test-only nodes of the hostile-input tests, registered by their modules (never by the pack)."""
import torch


class TurboHostileNaNModel:
    """MODEL -> MODEL whose diffusion model returns NaN from its `from_call`-th call on (a DIFFUSION_MODEL
    wrapper: inside any APPLY_MODEL wrapper, like a model that overflows)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "from_call": ("INT", {"default": 2, "min": 1, "max": 100})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"

    def patch(self, model, from_call):
        import comfy.patcher_extension

        calls = []

        def nan_after(executor, *args, **kwargs):
            calls.append(1)
            out = executor(*args, **kwargs)
            return torch.full_like(out, float("nan")) if len(calls) >= from_call else out

        patched = model.clone()
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "turbo_hostile_nan",
                                     nan_after)
        return (patched,)


NODES = {"TurboHostileNaNModel": TurboHostileNaNModel}
