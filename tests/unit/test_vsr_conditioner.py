"""VSR conditioner (models/vsr_conditioner.py): float64 reference, identity at scale 0, file format."""
import pytest
import torch
from safetensors.torch import save_file
from turbovideo.models import vsr_conditioner as vc

WIDTH = 48


def fresh(seed, scale):
    torch.manual_seed(seed)
    conditioner = vc.VSRConditioner(WIDTH).double()
    with torch.no_grad():
        conditioner.scale.fill_(scale)
    return conditioner


def inputs(seed, batch=2, tokens=30):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, tokens, WIDTH, generator=g, dtype=torch.float64) * 1.7 + 0.4
    lr = torch.randn(batch, tokens, vc.LATENT_CHANNELS, generator=g, dtype=torch.float64)
    return hidden, lr


def reference(conditioner, hidden, lr):
    """Per sample, written out with explicit loops (float64)."""
    w, b, s = conditioner.proj.weight, conditioner.proj.bias, float(conditioner.scale.detach())
    rows = []
    for x, tokens in zip(hidden, lr):
        c = tokens @ w.T + b
        c_n = (c - c.mean()) * x.std(correction=0) / (c.std(correction=0) + vc.EPS)
        rows.append(x.mean() + (x - x.mean() + s * c_n) / (1.0 + s * s) ** 0.5)
    return torch.stack(rows)


def test_matches_the_float64_reference():
    conditioner, (hidden, lr) = fresh(1, 0.6), inputs(2)
    torch.testing.assert_close(conditioner(hidden, lr), reference(conditioner, hidden, lr), atol=1e-12, rtol=0)


def test_keeps_the_mean_exactly_and_the_variance_roughly():
    conditioner, (hidden, lr) = fresh(3, 1.0), inputs(4, tokens=400)
    out = conditioner(hidden, lr)
    torch.testing.assert_close(out.mean(dim=(1, 2)), hidden.mean(dim=(1, 2)), atol=1e-12, rtol=0)
    ratio = out.std(dim=(1, 2)) / hidden.std(dim=(1, 2))
    assert ((ratio - 1).abs() < 0.05).all(), ratio  # independent x and c: unit variance kept
    assert (out - hidden).abs().mean() > 0.3


def test_fresh_conditioner_is_the_identity():
    torch.manual_seed(5)
    conditioner = vc.VSRConditioner(WIDTH).double()
    hidden, lr = inputs(6)
    assert float(conditioner.scale.detach()) == 0.0
    with torch.no_grad():
        assert torch.equal(conditioner(hidden, lr), hidden)
    out = conditioner(hidden, lr)  # training from zero: the same values, and a gradient for the scale
    torch.testing.assert_close(out, hidden, rtol=0, atol=1e-12)
    out.mul(torch.randn_like(out)).sum().backward()
    assert conditioner.scale.grad is not None and float(conditioner.scale.grad.abs()) > 0


def test_latent_tokens_follow_the_patchifier_order():
    latent = torch.randn(2, vc.LATENT_CHANNELS, 3, 4, 5)
    tokens = vc.latent_tokens(latent)
    assert tokens.shape == (2, 60, vc.LATENT_CHANNELS)
    f, h, w = 2, 1, 3
    assert torch.equal(tokens[1, f * 20 + h * 5 + w], latent[1, :, f, h, w])


def test_shape_errors_name_both_shapes():
    conditioner, (hidden, lr) = fresh(7, 0.5), inputs(8)
    with pytest.raises(ValueError, match="LR tokens"):
        conditioner(hidden, lr[:, :-1])


def test_save_load_round_trip(tmp_path):
    conditioner = fresh(9, 0.35).float()
    path = tmp_path / "vsr.safetensors"
    vc.save_vsr_conditioner(path, conditioner)
    assert vc.read_vsr_conditioner_header(path) == (WIDTH, vc.LATENT_CHANNELS)
    loaded = vc.load_vsr_conditioner(path)
    hidden, lr = (t.float() for t in inputs(10))
    assert torch.equal(loaded(hidden, lr), conditioner(hidden, lr))


def good_tensors():
    return {key: torch.randn(shape) for key, shape in vc.expected_shapes(WIDTH).items()}


META = {"turbovideo_adapter": "vsr_conditioner", "format_version": "1", "width": str(WIDTH),
        "latent_channels": "128", "block": "0"}


@pytest.mark.parametrize("change,message", [
    (lambda t, m: m.update(turbovideo_adapter="step_size_embedder"), "not a VSR conditioner"),
    (lambda t, m: m.update(format_version="2"), "format_version"),
    (lambda t, m: m.update(width="x"), "integer 'width'"),
    (lambda t, m: m.update(block="7"), "block 0 only"),
    (lambda t, m: t.pop("scale"), "keys"),
    (lambda t, m: t.update({"proj.bias": torch.randn(WIDTH + 1)}), "shape"),
    (lambda t, m: t["proj.weight"].view(-1)[3:4].fill_(float("nan")), "NaN"),
])
def test_broken_files_are_refused_with_a_reason(tmp_path, change, message):
    tensors, metadata = good_tensors(), dict(META)
    change(tensors, metadata)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=message):
        vc.load_vsr_conditioner(path)
