"""The speed nodes chained as in the example workflow: TurboQuantizeINT8 -> TurboFusedNorms ->
TurboAttention (sage), in both orders, on the tiny DiTs of every ATTENTION family."""
import pytest

from host.test_attention_host import (
    FAMILIES,
    attention_calls,  # noqa: F401  (fixture: the calls the override sends)
    attention_node,
    prompt_for,
    relative_error,
    run_latent,
)

pytestmark = pytest.mark.host

QUANTIZE = ("TurboQuantizeINT8", {"layers": "all", "granularity": "per_channel", "backend": "auto"})
FUSED = ("TurboFusedNorms", {})


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_fused_norms_and_sage_compose_in_any_order(comfy, tiny_models, captured, attention_calls,  # noqa: F811
                                                        family):
    plain = run_latent(comfy, captured, prompt_for(tiny_models, family))
    int8_only = run_latent(comfy, captured, prompt_for(tiny_models, family, [QUANTIZE]))
    attention_calls.clear()
    chain = run_latent(comfy, captured, prompt_for(tiny_models, family, [QUANTIZE, FUSED, attention_node("sage")]))
    # sage runs on top of INT8 (counted: off CUDA its 'auto' path is exact SDPA, so the latent may not show it)
    assert attention_calls and {call[0] for call in attention_calls} == {"sage"}
    reversed_chain = run_latent(comfy, captured,
                                prompt_for(tiny_models, family, [attention_node("sage"), FUSED, QUANTIZE]))
    int8_error = relative_error(int8_only, plain)
    assert 1e-4 < int8_error <= 5e-2  # the INT8 layers really run
    assert relative_error(chain, plain) <= int8_error + 5e-3  # sage adds at most its own small error
    assert relative_error(reversed_chain, chain) <= 5e-3
    again = run_latent(comfy, captured, prompt_for(tiny_models, family))
    assert relative_error(again, plain) == 0  # the shared model came back unpatched
