"""Shortcut fine-tuning: a step-size embedder on a frozen LTX-Video, flow matching + self-consistency.

Each sample of a batch is, with probability --bootstrap-fraction, a bootstrap sample: a step of a random
N-step shifted schedule (the steps TurboShortcutSampler takes), told its nearest trained step size, with
the target (u1 + u2) / 2 of two half steps computed without gradient from the EMA weights
(samplers/shortcut_targets.py). Otherwise it is a flow-matching sample at a shifted random sigma, told the
smallest trained step size, with the target v = noise - x0. Loss: MSE on the velocity.

The embedder is installed with patches/step_size.apply_step_embedder (what TurboShortcutModel does) and
the step size reaches it through transformer_options["turbo_step_size"] (what TurboShortcutSampler sets),
so the saved file (models/step_embedder.py format) runs in the nodes exactly as trained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models.step_embedder import StepSizeEmbedder, save_step_embedder
from ...patches.ksamplers import STEP_SIZE_KEY
from ...patches.step_size import apply_step_embedder, model_family, model_width
from ...samplers.shortcut import DEFAULT_TRAINED_STEP_SIZES
from ...samplers.shortcut_targets import bootstrap_target, draw_flow_sigmas, draw_shortcut_steps, told_step_sizes
from ..objective import Objective, flow_pair


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


class ShortcutObjective(Objective):
    name = "shortcut"
    help = "step-size embedder (TurboShortcutModel): flow matching + shortcut self-consistency"
    ema_decay = 0.999

    def __init__(self, base, trained_step_sizes=DEFAULT_TRAINED_STEP_SIZES, step_counts=(1, 2, 4, 8),
                 shift: float = 3.0, bootstrap_fraction: float = 0.25, clip: float | None = 4.0,
                 ema_decay: float | None = 0.999):
        super().__init__(base)
        if not 0.0 <= bootstrap_fraction <= 1.0:
            raise ValueError(f"--bootstrap-fraction must be in [0, 1], got {bootstrap_fraction}")
        self.ema_decay = ema_decay
        self.trained_step_sizes = sorted(float(s) for s in trained_step_sizes)
        self.step_counts, self.shift = [int(n) for n in step_counts], float(shift)
        self.bootstrap_fraction, self.clip = float(bootstrap_fraction), clip
        family = model_family(base.patcher)
        self.embedder = StepSizeEmbedder(model_width(base.patcher, family)).to(base.device)
        self.__dict__["patcher"] = apply_step_embedder(base.patcher, self.embedder, self.trained_step_sizes,
                                                       "training")

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--trained-step-sizes", type=_floats, default=list(DEFAULT_TRAINED_STEP_SIZES),
                            help="comma-separated step sizes in (0, 1] the adapter is trained for (default 1..1/128)")
        parser.add_argument("--step-counts", type=lambda t: [int(v) for v in _floats(t)], default=[1, 2, 4, 8],
                            help="sampling step counts whose shifted schedules bootstrap samples are drawn from")
        parser.add_argument("--shift", type=float, default=3.0, help="SD3 shift of the timesteps toward noise")
        parser.add_argument("--bootstrap-fraction", type=float, default=0.25,
                            help="share of samples with self-consistency targets (the rest: flow matching)")
        parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the target weights (0: none)")

    @classmethod
    def from_args(cls, base, args):
        return cls(base, args.trained_step_sizes, args.step_counts, args.shift, args.bootstrap_fraction,
                   ema_decay=args.ema or None)

    def velocity(self, x, sigma, step_size: float) -> torch.Tensor:
        """u(x, sigma, step_size): the patched model told `step_size` (one size for the whole call)."""
        return self.base.velocity(self.patcher, x, sigma, options={STEP_SIZE_KEY: float(step_size)})

    def grouped_velocity(self, x, sigma, sizes: list[float]) -> torch.Tensor:
        """u for samples told different step sizes: one model call per distinct size."""
        out = torch.empty_like(x)
        for size in sorted(set(sizes)):
            index = torch.tensor([i for i, s in enumerate(sizes) if s == size], device=x.device)
            out[index] = self.velocity(x[index], sigma[index], size).to(out.dtype)
        return out

    def draw(self, count: int):
        """(sigma, told step size, bootstrap step or 0) per sample."""
        generator = self.sub_generator()
        sigma, step = draw_shortcut_steps(count, self.step_counts, self.shift, generator)
        flow = draw_flow_sigmas(count, self.shift, generator)
        told = told_step_sizes(step, self.trained_step_sizes)
        smallest = self.trained_step_sizes[0]
        boot = (torch.rand(count, generator=generator) < self.bootstrap_fraction).tolist()
        boot = [b and t > smallest for b, t in zip(boot, told)]
        sigmas = [float(sigma[i]) if boot[i] else float(flow[i]) for i in range(count)]
        sizes = [told[i] if boot[i] else smallest for i in range(count)]
        steps = [float(step[i]) if boot[i] else 0.0 for i in range(count)]
        return sigmas, sizes, steps

    @torch.no_grad()
    def targets(self, x, v, sigma, steps: list[float]) -> torch.Tensor:
        target = v.clone()
        with self.ema_weights():
            for i, step in enumerate(steps):
                if step > 0:
                    half = told_step_sizes(torch.tensor([step / 2]), self.trained_step_sizes)[0]
                    target[i:i + 1] = bootstrap_target(self.velocity, x[i:i + 1], sigma[i:i + 1],
                                                       torch.tensor([step], device=x.device), half, self.clip)
        return target

    def forward(self, batch):
        x0 = self.latent(batch)
        sigmas, sizes, steps = self.draw(x0.shape[0])
        sigma = torch.tensor(sigmas, device=self.device, dtype=torch.float32)
        x, v = flow_pair(x0, self.randn(x0.shape), sigma)
        target = self.targets(x, v, sigma, steps)
        return F.mse_loss(self.grouped_velocity(x, sigma, sizes), target)

    def save_adapter(self, path) -> None:
        save_step_embedder(path, self.embedder, self.trained_step_sizes)


OBJECTIVE = ShortcutObjective
