"""TurboT2AV's sampling as ComfyUI SIGMAS + the rCM sampler: its four TrigFlow times, its per-step update."""
import math

import pytest
import torch
from turbovideo.samplers import rcm

# TurboT2AV: run_av_inference_eval._student_sigmas builds [pi/2, *backward_trig_timesteps, 0] in the run's
# dtype, bfloat16 (mixed_precision: true in bidirectional_rcm.yaml); backward_trig_timesteps = 1.5, 1.4, 1.0
TRIG_TIMES = torch.tensor([math.pi / 2, 1.5, 1.4, 1.0, 0.0], dtype=torch.bfloat16).double()


def rectified_flow_sigma(t):
    """The trig wrapper's RF time: x_rf = x_trig / (cos t + sin t), sigma = sin t / (cos t + sin t)."""
    return torch.sin(t) / (torch.cos(t) + torch.sin(t))


def test_preset_sigmas_are_turbot2avs_times_mapped_to_rectified_flow():
    sigmas = rcm.rcm_preset_sigmas("turbot2av", 4)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (5,)
    torch.testing.assert_close(sigmas.double(), rectified_flow_sigma(TRIG_TIMES), rtol=0, atol=1e-6)
    # the bf16 times are what it runs: the first sigma is 0.99952, not 1 (exact pi/2), and 1.4 -> 1.3984375
    assert abs(sigmas[0].item() - 0.999516) < 1e-6 and abs(sigmas[2].item() - 0.851726) < 1e-6
    back = torch.atan(sigmas.double() / (1 - sigmas.double()))
    torch.testing.assert_close(back[:-1], TRIG_TIMES[:-1], rtol=0, atol=1e-5)
    for steps in (1, 2, 3):
        expected = rectified_flow_sigma(torch.cat([TRIG_TIMES[:steps], TRIG_TIMES[-1:]]))
        torch.testing.assert_close(rcm.rcm_preset_sigmas("turbot2av", steps).double(), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="steps must be an integer from 1 to 4"):
        rcm.rcm_preset_sigmas("turbot2av", 5)


def test_the_rcm_step_is_turbot2avs_trigflow_recorruption():
    """TurboT2AV: x_trig <- cos t' x0 + sin t' eps, read by the model as x_rf = x_trig / (cos t' + sin t').
    The pack's rCM step (core's lcm): x_rf <- (1 - s') x0 + s' eps with s' the preset's sigma."""
    generator = torch.Generator().manual_seed(11)
    x0, eps = (torch.randn(4, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    sigmas = rcm.rcm_preset_sigmas("turbot2av", 4).double()
    for t_next, s_next in zip(TRIG_TIMES[1:-1], sigmas[1:-1]):
        trig = torch.cos(t_next) * x0 + torch.sin(t_next) * eps
        expected = trig / (torch.cos(t_next) + torch.sin(t_next))
        got = rcm.rcm_step(None, x0, None, s_next, eps, ode=False)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(rcm.rcm_step(None, x0, None, 0.0, None, ode=False), x0)  # last step returns x0
    # first step: TurboT2AV feeds pure noise at t0 = 1.5703125, i.e. x_rf = eps / (cos t0 + sin t0); core
    # scales the noise by sigma_0 = sin t0 / (cos t0 + sin t0): the two differ by the factor sin t0
    assert abs(1 - math.sin(TRIG_TIMES[0].item())) < 2e-7
