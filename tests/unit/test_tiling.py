"""Tiled inference (samplers/tiling.py): a local denoiser tiled equals it untiled, in space and time."""
import pytest
import torch
from turbovideo.samplers import tiling

RADIUS = 2  # receptive radius (cells, every axis) of LocalDenoiser: two 3x3x3 convolutions


class LocalDenoiser(torch.nn.Module):
    """A fixed random 3x3x3 conv stack; with causal_bump its input's first frame gets extra treatment
    (as an LTX model treats the causal first latent), which is what dropping that latent undoes."""

    def __init__(self, channels=4, hidden=8, causal_bump=False, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = torch.nn.ModuleList(
            [torch.nn.Conv3d(channels, hidden, 3, padding=1), torch.nn.Conv3d(hidden, channels, 3, padding=1)])
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.causal_bump = causal_bump

    def forward(self, x):
        out = self.convs[1](torch.tanh(self.convs[0](x)))
        if self.causal_bump:
            out = out.clone()
            out[:, :, 0] += 3.0 * x[:, :, 0]
        return out


def run_tiled(model, x, tile_batch=1, **plan):
    windows = tiling.plan_windows(tuple(x.shape[2:]), **plan)
    return tiling.tiled_apply(lambda crops, _: model(crops), x, windows, tile_batch=tile_batch), windows


@pytest.fixture
def video():
    return torch.randn(2, 4, 6, 29, 27, generator=torch.Generator().manual_seed(torch.seed() % 2**31))


@pytest.mark.parametrize("kind", ["cosine", "gaussian"])
def test_spatial_tiles_add_no_seam(video, kind):
    model, x = LocalDenoiser().double(), video.double()
    with torch.no_grad():
        tiled, windows = run_tiled(model, x, tile=(12, 12), overlap=8, kind=kind)
        reference = model(x)
    assert len(windows) >= 9
    # Margins (int(0.25 * 8) = 2 = RADIUS) hide every cell that sees a cut, so this holds up to the
    # video border too, where tiles and the untiled model share the same zero padding. Float64 on both
    # sides, so the bound is far below the 1e-5 (float32 alone rounds at ~1e-6 here).
    torch.testing.assert_close(tiled, reference, atol=1e-10, rtol=0)


def test_overlap_below_receptive_field_shows_seams(video):
    model = LocalDenoiser()
    with torch.no_grad():
        reference = model(video)
        tiled, _ = run_tiled(model, video, tile=(12, 12), overlap=4)  # margin 1 < RADIUS
    assert (tiled - reference).abs().max() > 1e-3


def test_one_tile_equals_untiled_exactly(video):
    model = LocalDenoiser(causal_bump=True)
    with torch.no_grad():
        tiled, windows = run_tiled(model, video, tile=(64, 64), overlap=8, segment=0)
        assert len(windows) == 1
        assert torch.equal(tiled, model(video))


def test_segments_fuse_to_the_single_segment_result():
    x = torch.randn(1, 4, 17, 10, 9, generator=torch.Generator().manual_seed(torch.seed() % 2**31))
    model, x = LocalDenoiser(causal_bump=True).double(), x.double()
    with torch.no_grad():
        reference = model(x)
        fused, windows = run_tiled(model, x, tile=(10, 10), overlap=0, segment=8, segment_overlap=5,
                                   margin_fraction=0.5)
    assert len({w.frames for w in windows}) >= 3
    torch.testing.assert_close(fused, reference, atol=1e-10, rtol=0)


def test_keeping_the_causal_first_latent_breaks_fusion():
    x = torch.randn(1, 4, 17, 6, 6, generator=torch.Generator().manual_seed(torch.seed() % 2**31))
    model = LocalDenoiser(causal_bump=True)
    with torch.no_grad():
        kept, _ = run_tiled(model, x, tile=(6, 6), overlap=0, segment=8, segment_overlap=5,
                            margin_fraction=0.0, drop_first_latent=False)
        assert (kept - model(x)).abs().max() > 0.1


def test_tile_batch_does_not_change_the_result(video):
    model = LocalDenoiser().double()
    x = video.double()
    with torch.no_grad():
        results = [run_tiled(model, x, tile_batch=b, tile=(11, 10), overlap=6, segment=4, segment_overlap=2)[0]
                   for b in (1, 3, 64)]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], atol=1e-12, rtol=0)


def test_batches_hold_equal_shapes_and_every_window_once():
    windows = tiling.plan_windows((9, 29, 27), tile=(11, 10), overlap=6, segment=4, segment_overlap=2)
    groups = tiling.batches(windows, 4)
    assert all(len(g) <= 4 and len({w.shape for w in g}) == 1 for g in groups)
    assert sorted(id(w) for g in groups for w in g) == sorted(id(w) for w in windows)


@pytest.mark.parametrize("kind", ["cosine", "gaussian"])
def test_weights_sum_to_one_and_vanish_at_cuts(kind):
    shape = (9, 23, 31)
    windows = tiling.plan_windows(shape, tile=(10, 12), overlap=6, segment=5, segment_overlap=3, kind=kind)
    total = torch.zeros(shape, dtype=torch.float64)
    for w in windows:
        total[w.index[2:]] += w.weight(torch.float64, "cpu")
        if w.frames[0] > 0:
            assert bool((w.frame_weights[0] == 0).all())  # the dropped causal first latent
        if w.rows[0] > 0:
            assert bool((w.row_weights[:1] == 0).all())  # margin int(0.25 * 6) = 1
        if w.cols[1] < shape[2]:
            assert bool((w.col_weights[-1:] == 0).all())
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)


def test_gaussian_is_the_paper_kernel_inside_the_tile():
    weights = tiling.axis_weights([(0, 40)], "gaussian")[0]
    assert torch.equal(weights, torch.ones(40, dtype=torch.float64))  # alone: normalised to 1
    raw = tiling._gaussian(40, tiling.GAUSSIAN_VARIANCE)
    u = (torch.arange(40, dtype=torch.float64) + 0.5) / 40
    torch.testing.assert_close(raw, torch.exp(-(u - 0.5) ** 2 / 0.02), atol=1e-15, rtol=0)


@pytest.mark.parametrize("plan, word", [
    (dict(tile=(8, 8), overlap=8), "tile_overlap"),
    (dict(tile=(0, 8), overlap=0), "tile_size"),
    (dict(tile=(8, 8), overlap=2, segment=8, segment_overlap=1), "segment_overlap"),
    (dict(tile=(8, 8), overlap=2, kind="box"), "weights"),
])
def test_bad_plans_name_the_input(plan, word):
    with pytest.raises(ValueError, match=word):
        tiling.plan_windows((9, 20, 20), **plan)


def test_tiled_apply_rejects_images():
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        tiling.tiled_apply(lambda c, _: c, torch.randn(1, 4, 8, 8), [])


# ---- windows on a coarser unit grid (SeedVR2: whole attention windows) -----------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_unit_windows_start_on_the_grid_and_are_whole_units(seed):
    gen = torch.Generator().manual_seed(seed + 100 * (torch.seed() % 1000))
    unit = tuple(int(v) for v in torch.randint(1, 6, (3,), generator=gen))
    shape = tuple(int(u * n + r) for u, n, r in zip(unit, torch.randint(3, 7, (3,), generator=gen),
                                                     torch.randint(0, 3, (3,), generator=gen)))
    grid = tiling.unit_grid(shape, unit)
    windows = tiling.plan_windows(shape, tile=(2, 2), overlap=1, segment=3, segment_overlap=2, unit=unit)
    for window in windows:
        for (start, stop), u, length in zip((window.frames, window.rows, window.cols), unit, shape):
            assert start % u == 0
            assert (stop - start) % u == 0 or stop == length
    assert {w.rows for w in windows} >= {(0, 2 * unit[1])} and max(w.cols[1] for w in windows) == shape[2]
    total = torch.zeros(shape, dtype=torch.float64)
    for window in windows:
        total[window.index[2:]] += window.weight(torch.float64, "cpu")
    torch.testing.assert_close(total, torch.ones(shape, dtype=torch.float64), atol=1e-12, rtol=0)
    assert len({w.rows for w in windows}) == grid[1] - 1  # 2-unit tiles sharing one unit


def test_a_tile_asked_in_cells_becomes_whole_units_of_the_same_area():
    sizes = tiling.to_units((2, 120, 120), (1, 30, 48), tile=(80, 80), overlap=8, segment=0, segment_overlap=2)
    assert sizes.tile == (2, 2) and sizes.overlap == 1  # 80 / sqrt(30 x 48) = 2.1 units; overlap rounds up
    same = tiling.to_units((9, 29, 27), (1, 1, 1), tile=(11, 10), overlap=6, segment=4, segment_overlap=2)
    assert same == tiling.UnitSizes((11, 10), 6, 4, 2)  # unit cells: the sizes as given
    clipped = tiling.to_units((2, 40, 40), (1, 40, 40), tile=(30, 30), overlap=8, segment=0, segment_overlap=2)
    assert clipped.tile == (1, 1) and clipped.overlap == 0  # one unit cannot overlap itself
    long = tiling.to_units((64, 40, 40), (8, 40, 40), tile=(40, 40), overlap=0, segment=22, segment_overlap=2)
    assert (long.segment, long.segment_overlap) == (3, 1)  # 22 -> 2.75 units -> 3; overlap >= 2 latents: 1 unit
