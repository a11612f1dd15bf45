"""Few-step samplers as SAMPLER and SIGMAS nodes: rCM, non-uniform shortcut, LTX token shift."""
import math

from comfy_api.latest import io

from ..patches import ksamplers
from ..samplers import flow_shift, rcm, shortcut

CATEGORY = "TurboVideo/sampling"


def latent_tokens(latent) -> int:
    """Tokens of a video latent [B, C, T, H, W] for a patch-size-1 DiT (LTX-Video): T * H * W."""
    samples = latent["samples"]
    if samples.ndim != 5:
        raise ValueError(f"latent: expected a video latent [B, C, T, H, W], got shape {tuple(samples.shape)}; "
                         "connect an LTX-Video or Wan video latent")
    return int(math.prod(samples.shape[2:]))


class TurboRCMSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboRCMSigmas", display_name="Turbo rCM Sigmas", category=CATEGORY,
            description="TurboDiffusion's rCM schedule (TrigFlow times -> rectified-flow sigmas) for 1-4 steps.",
            inputs=[
                io.Int.Input("steps", default=4, min=1, max=rcm.RCM_MAX_STEPS,
                             tooltip="rCM models are distilled for 1 to 4 steps."),
                io.Float.Input("sigma_max", default=80.0, min=1.0, max=5000.0, step=1.0,
                               tooltip="Starting noise in TrigFlow sigma: 80 for T2V, 200 for I2V; larger "
                                       "(e.g. 1600) lowers diversity and may raise quality."),
                io.Combo.Input("mid_timesteps", options=[*rcm.RCM_MID_T_PRESETS, *rcm.RCM_TIME_PRESETS],
                               default="default",
                               tooltip="Intermediate TrigFlow times: default (1.5, 1.4, 1.0) or "
                                       "alternative (1.3, 1.0, 0.6). turbot2av: TurboT2AV's whole schedule "
                                       "(pi/2, 1.5, 1.4, 1.0, as it runs them in bfloat16); sigma_max is not "
                                       "used, the first sigma is 0.99952."),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, steps, sigma_max, mid_timesteps) -> io.NodeOutput:
        if mid_timesteps in rcm.RCM_TIME_PRESETS:
            return io.NodeOutput(rcm.rcm_preset_sigmas(mid_timesteps, steps))
        mid_t = rcm.RCM_MID_T_PRESETS[mid_timesteps]
        return io.NodeOutput(rcm.rcm_sigmas(steps, sigma_max=sigma_max, mid_t=mid_t))


class TurboRCMSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboRCMSampler", display_name="Turbo rCM Sampler", category=CATEGORY,
            description="rCM few-step sampling. SDE: fresh noise every step (TurboDiffusion's default); "
                        "ODE: deterministic Euler, sharper but less robust. Noise follows the noise seed.",
            inputs=[io.Combo.Input("mode", options=["sde", "ode"], default="sde")],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, mode) -> io.NodeOutput:
        return io.NodeOutput(ksamplers.rcm_sampler(ode=mode == "ode"))


class TurboShortcutSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboShortcutSigmas", display_name="Turbo Shortcut Sigmas", category=CATEGORY,
            description="TurboVSR's non-uniform schedule: uniform steps shifted toward noise by resolution.",
            inputs=[
                io.Int.Input("steps", default=4, min=1, max=128),
                io.Combo.Input("shift_mode", options=["from latent size", "manual"], default="manual",
                               tooltip="from latent size: shift e^mu with mu linear in the latent's tokens "
                                       "(LTX-Video's rule); manual: the shift below."),
                io.Float.Input("shift", default=1.0, min=0.01, max=100.0, step=0.01,
                               tooltip="SD3 shift; > 1 spends more of the steps at high noise."),
                io.Latent.Input("latent", optional=True, tooltip="Needed for 'from latent size'."),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, steps, shift_mode, shift, latent=None) -> io.NodeOutput:
        if shift_mode == "from latent size":
            if latent is None:
                raise ValueError("latent: 'from latent size' needs a latent; connect one or set shift_mode "
                                 "to manual")
            shift = math.exp(flow_shift.ltx_token_shift_mu(latent_tokens(latent)))
        return io.NodeOutput(shortcut.shortcut_sigmas(steps, shift=shift))


class TurboShortcutSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboShortcutSampler", display_name="Turbo Shortcut Sampler", category=CATEGORY,
            description="Euler where the model is told, every step, the nearest step size its adapter was "
                        "trained for (use with TurboShortcutModel).",
            inputs=[],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(ksamplers.shortcut_sampler())


class TurboLTXShiftSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboLTXShiftSigmas", display_name="Turbo LTX Token-Shift Sigmas", category=CATEGORY,
            description="LTX-Video's resolution shift: mu linear in the latent's token count "
                        "(base at 1024 tokens, max at 4096), optionally stretched to a terminal sigma.",
            inputs=[
                io.Latent.Input("latent", tooltip="The latent to sample; its size sets the shift."),
                io.Int.Input("steps", default=8, min=1, max=1000),
                io.Float.Input("base_shift", default=0.95, min=0.0, max=100.0, step=0.01),
                io.Float.Input("max_shift", default=2.05, min=0.0, max=100.0, step=0.01),
                io.Boolean.Input("stretch", default=True, tooltip="Stretch so the last non-zero sigma is terminal."),
                io.Float.Input("terminal", default=0.1, min=0.001, max=0.99, step=0.01),
            ],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, latent, steps, base_shift, max_shift, stretch, terminal) -> io.NodeOutput:
        sigmas = flow_shift.ltx_shift_sigmas(steps, latent_tokens(latent), base_shift, max_shift, stretch, terminal)
        return io.NodeOutput(sigmas)


class TurboSplitSigmasAtBoundary(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TurboSplitSigmasAtBoundary", display_name="Turbo Split Sigmas At Boundary",
            category=CATEGORY,
            description="Splits SIGMAS between two experts by noise level, as Wan2.2 A14B does: steps that "
                        "start at sigma >= boundary go to the high-noise model, the rest to the low-noise model. "
                        "Run the low half with noise disabled, from the high half's output.",
            inputs=[
                io.Sigmas.Input("sigmas"),
                io.Float.Input("boundary", default=0.9, min=0.0, max=1.0, step=0.001,
                               tooltip="Noise level (rectified-flow sigma) where the low-noise expert takes over: "
                                       "0.9 for TurboWan2.2 I2V A14B."),
            ],
            outputs=[io.Sigmas.Output(display_name="high_sigmas"), io.Sigmas.Output(display_name="low_sigmas")],
        )

    @classmethod
    def execute(cls, sigmas, boundary) -> io.NodeOutput:
        return io.NodeOutput(*rcm.split_at_boundary(sigmas, boundary))


NODES = [TurboRCMSigmas, TurboRCMSampler, TurboSplitSigmasAtBoundary, TurboShortcutSigmas, TurboShortcutSampler,
         TurboLTXShiftSigmas]
