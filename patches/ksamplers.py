"""The pure sampler loops of samplers/ as ComfyUI SAMPLER objects (comfy.samplers.KSAMPLER).

ComfyUI calls `fn(model, x, sigmas, extra_args, callback, disable, **options)` with x already noised
to sigmas[0]; `model(x, sigma_batch, **extra_args)` returns the x0 prediction. The callback drives
the progress bar and previews; interrupts are checked before every model call.
"""
import logging

import comfy.model_management
import comfy.samplers
import torch

from ..samplers import rcm, shortcut

STEP_SIZE_KEY = "turbo_step_size"  # transformer_options entry read by the step-size embedding patch
STEP_EMBEDDER_KEY = "turbo_step_embedder"  # set by TurboShortcutModel: the adapter's description

_warned_no_adapter = set()


def _x0_predictor(model, extra_args):
    def denoise(x, sigma):
        return model(x, sigma * x.new_ones([x.shape[0]]), **extra_args)

    return denoise


def _progress(callback):
    if callback is None:
        return None

    def report(i, x, x0, sigma):
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": x0})

    return report


def seeded_step_noise(seed: int):
    """Fresh standard normal noise per step, drawn on the CPU so a seed gives the same video anywhere."""
    generator = torch.Generator(device="cpu").manual_seed(seed + 1)

    def noise_like(x, step_index):
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device="cpu")
        return noise.to(device=x.device, dtype=x.dtype)

    return noise_like


def rcm_sampler(ode: bool) -> comfy.samplers.KSAMPLER:
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = extra_args or {}
        return rcm.sample_rcm(
            _x0_predictor(model, extra_args), x, sigmas,
            noise_like=seeded_step_noise(int(extra_args.get("seed", 0))), ode=ode,
            callback=_progress(callback),
            check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)

    return comfy.samplers.KSAMPLER(sample)


def _with_step_size(extra_args, step_size):
    model_options = dict(extra_args.get("model_options", {}))
    transformer_options = dict(model_options.get("transformer_options", {}))
    transformer_options[STEP_SIZE_KEY] = step_size
    model_options["transformer_options"] = transformer_options
    return {**extra_args, "model_options": model_options}


def _trained_step_sizes(extra_args, fallback):
    options = extra_args.get("model_options", {}).get("transformer_options", {})
    embedder = options.get(STEP_EMBEDDER_KEY)
    if embedder is None:
        key = "no_adapter"
        if key not in _warned_no_adapter:
            _warned_no_adapter.add(key)
            logging.warning("TurboShortcutSampler: the MODEL has no step-size adapter (TurboShortcutModel), "
                            "so it samples as plain Euler on the shortcut schedule.")
        return fallback
    return tuple(embedder["trained_step_sizes"])


def shortcut_sampler(trained_step_sizes=shortcut.DEFAULT_TRAINED_STEP_SIZES) -> comfy.samplers.KSAMPLER:
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = extra_args or {}
        sizes = _trained_step_sizes(extra_args, trained_step_sizes)

        def denoise(x, sigma, step_size):
            return _x0_predictor(model, _with_step_size(extra_args, step_size))(x, sigma)

        return shortcut.sample_shortcut(
            denoise, x, sigmas, trained_step_sizes=sizes, callback=_progress(callback),
            check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)

    return comfy.samplers.KSAMPLER(sample)
