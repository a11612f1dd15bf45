"""Chunk/tile plans and blend weights (samplers/video_chunks.py), checked in float64.

Properties: plans cover everything with exactly the requested overlap and balanced lengths; chunk
pixel spans follow the causal-first-latent mapping; weights are a partition of unity (so a signal
cut into exact pieces comes back exactly) and ignore what they promise to ignore (the outer margin
of a symmetric overlap, the warm-up of a causal one); the size chooser returns the largest sizes
that fit a budget.
"""
import math
import random

import pytest
import torch
from turbovideo.samplers import video_chunks as vc

F64 = torch.float64


def _random_plans(seed, count=200):
    rng = random.Random(seed)
    for _ in range(count):
        size = rng.randint(2, 12)
        yield rng.randint(1, 60), size, rng.randint(1, size - 1)


def test_frame_counts_follow_one_plus_factor_k():
    for factor in (4, 8):
        valid = [n for n in range(1, 60) if vc.is_valid_frame_count(n, factor)]
        assert valid == list(range(1, 60, factor))
        assert vc.nearest_valid_frame_counts(20, 8) == (17, 25)
        for n in range(1, 60):
            below, above = vc.nearest_valid_frame_counts(n, factor)
            assert vc.is_valid_frame_count(below, factor) and vc.is_valid_frame_count(above, factor)
            assert below <= n <= above and above - below in ((0,) if n in valid else (factor,))
    for latents in range(1, 20):
        assert vc.latent_frame_count(vc.pixel_frame_count(latents, 8), 8) == latents
    with pytest.raises(ValueError, match="20 frames"):
        vc.latent_frame_count(20, 8)


@pytest.mark.parametrize("seed", [0, 1])
def test_spans_cover_with_exact_overlap_and_balanced_lengths(seed):
    for length, size, overlap in _random_plans(seed):
        spans = vc.plan_spans(length, size, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        lengths = [b - a for a, b in spans]
        assert max(lengths) <= size and max(lengths) - min(lengths) <= 1
        if len(spans) > 1:
            assert all(spans[i][1] - spans[i + 1][0] == overlap for i in range(len(spans) - 1))
            # fewest spans: one fewer could not reach the end
            assert (len(spans) - 1) * (size - overlap) + overlap < length


def test_chunk_pixel_spans_follow_the_causal_first_latent():
    for factor in (4, 8):
        for latents in (1, 2, 9, 17):
            chunks = vc.plan_temporal(latents, 5, 2, factor)
            assert chunks[-1].pixel[1] == vc.pixel_frame_count(latents, factor)
            for chunk in chunks:
                a, b = chunk.latent
                assert chunk.pixel == (factor * a, factor * (b - 1) + 1)  # latent a stands for pixel frame f*a
                assert chunk.pixel[1] - chunk.pixel[0] == vc.pixel_frame_count(b - a, factor)
                assert len(chunk.pixel_weights) == chunk.pixel[1] - chunk.pixel[0]
                assert len(chunk.latent_weights) == b - a


def _assemble(spans, weights, signal):
    """sum_k w_k * signal[span_k] / sum_k w_k, the way the VAE driver blends exact pieces."""
    out, total = torch.zeros_like(signal), torch.zeros_like(signal)
    for (a, b), w in zip(spans, weights):
        out[a:b] += w * signal[a:b]
        total[a:b] += w
    return out / total, total


@pytest.mark.parametrize("causal", [False, True])
def test_weights_are_a_partition_of_unity_that_reassembles_a_signal(causal):
    for length, size, overlap in _random_plans(2 + causal):
        spans = vc.plan_spans(length, size, overlap)
        weights = vc.blend_weights(spans, causal)
        signal = torch.randn(length, dtype=F64)
        out, total = _assemble(spans, weights, signal)
        if size > 2 * overlap:  # each cell in at most two spans: the weights sum to one without normalising
            assert torch.allclose(total, torch.ones_like(total), atol=1e-12, rtol=0)
        assert (total > 0).all()
        assert torch.allclose(out, signal, atol=1e-12, rtol=0)
        for w in weights:
            assert ((w >= 0) & (w <= 1)).all()


def test_symmetric_ramp_is_sin_squared_over_the_middle_of_the_overlap():
    overlap, margin = 16, 4
    ramp = vc.overlap_ramp(overlap, margin)
    x = [(i - margin + 0.5) / (overlap - 2 * margin) for i in range(overlap)]
    expected = [0.0 if v < 0 else 1.0 if v > 1 else math.sin(0.5 * math.pi * v) ** 2 for v in x]
    assert torch.allclose(ramp, torch.tensor(expected, dtype=F64), atol=1e-15, rtol=0)
    assert (ramp.diff() >= 0).all()


def test_weights_ignore_the_outer_margin_and_the_causal_warm_up():
    """Garbage in the cells a weight claims to ignore must not reach the result."""
    spans = vc.plan_spans(40, 16, 8)  # overlaps of 8 cells, margin 8 // 4 = 2
    signal = torch.randn(40, dtype=F64)
    for causal in (False, True):
        weights = vc.blend_weights(spans, causal)
        out, total = torch.zeros(40, dtype=F64), torch.zeros(40, dtype=F64)
        for index, ((a, b), w) in enumerate(zip(spans, weights)):
            piece = signal[a:b].clone()
            if index > 0:
                piece[: 8 if causal else 2] += 1e6  # the later chunk's warm-up / outer margin
            if index + 1 < len(spans) and not causal:
                piece[-2:] += 1e6  # the earlier chunk's outer margin
            out[a:b] += w * piece
            total[a:b] += w
        assert torch.allclose(out / total, signal, atol=1e-9, rtol=0)


def test_temporal_plan_blends_pixels_and_latents_to_unity():
    for factor in (4, 8):
        chunks = vc.plan_temporal(17, 6, 3, factor)
        pixels, latents = torch.zeros(chunks[-1].pixel[1], dtype=F64), torch.zeros(17, dtype=F64)
        for chunk in chunks:
            pixels[slice(*chunk.pixel)] += chunk.pixel_weights
            latents[slice(*chunk.latent)] += chunk.latent_weights
        assert torch.allclose(pixels, torch.ones_like(pixels), atol=1e-12)
        assert torch.allclose(latents, torch.ones_like(latents), atol=1e-12)


def test_tiles_cover_the_grid_with_unit_weight_sum_in_pixel_units():
    for scale in (1, 8, 32):
        tiles = vc.plan_tiles(11, 7, (4, 5), 2, scale)
        total = torch.zeros(11 * scale, 7 * scale, dtype=F64)
        for tile in tiles:
            assert tile.weights.shape == (tile.rows[1] - tile.rows[0], tile.cols[1] - tile.cols[0])
            assert all(v % scale == 0 for v in tile.rows + tile.cols)
            total[slice(*tile.rows), slice(*tile.cols)] += tile.weights
        assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
    assert len(vc.plan_tiles(4, 4, (8, 8), 2)) == 1


def _cost(t, h, w):
    return 1000.0 + 10.0 * t * h * w  # fixed part plus a part per latent cell


def test_choose_sizes_takes_the_longest_chunk_that_fits():
    shape = (40, 8, 8)
    assert vc.choose_sizes(shape, _cost(40, 8, 8), _cost, 3, 3) == vc.ChunkSizes(40, 8, 8)
    for budget in (_cost(3, 8, 8), _cost(7, 8, 8) + 5, _cost(25, 8, 8) - 1):
        sizes = vc.choose_sizes(shape, budget, _cost, 3, 3)
        assert (sizes.height, sizes.width) == (8, 8)
        assert _cost(sizes.frames, 8, 8) <= budget < _cost(sizes.frames + 1, 8, 8)


def test_choose_sizes_tiles_when_a_full_frame_chunk_does_not_fit():
    shape = (40, 12, 20)
    budget = _cost(3, 6, 6) + 1
    sizes = vc.choose_sizes(shape, budget, _cost, 3, 2)
    assert sizes == vc.ChunkSizes(3, 6, 6)
    assert vc.choose_sizes(shape, 1.0, _cost, 3, 2) == vc.ChunkSizes(3, 2, 2)  # nothing fits: the smallest


def test_choose_sizes_keeps_manual_overrides_and_fills_the_other_size():
    shape = (40, 12, 20)
    assert vc.choose_sizes(shape, 0.0, _cost, 3, 2, frames=9, tile=5) == vc.ChunkSizes(9, 5, 5)
    sizes = vc.choose_sizes(shape, _cost(10, 12, 12), _cost, 3, 2, frames=10)
    assert sizes == vc.ChunkSizes(10, 12, 12)
    sizes = vc.choose_sizes(shape, _cost(12, 4, 4), _cost, 3, 2, tile=4)
    assert sizes == vc.ChunkSizes(12, 4, 4)


@pytest.mark.parametrize("latents, chunk", [(1, 3), (5, 1), (9, 4), (17, 5)])
def test_carried_chunks_follow_one_another_without_overlap(latents, chunk):
    factor = 4
    chunks = vc.plan_carried(latents, chunk, factor)
    assert chunks[0].latent[0] == 0 and chunks[-1].latent[1] == latents
    assert chunks[0].pixel == (0, 1 + factor * (chunks[0].latent[1] - 1))  # frame 0 alone, then groups of 4
    for before, after in zip(chunks, chunks[1:]):
        assert after.latent[0] == before.latent[1] and after.pixel[0] == before.pixel[1]
        assert after.pixel[1] - after.pixel[0] == factor * (after.latent[1] - after.latent[0])
    assert chunks[-1].pixel[1] == vc.pixel_frame_count(latents, factor)
    assert all(max(c.latent[1] - c.latent[0] for c in chunks) <= chunk for c in chunks)
    assert all(bool((c.pixel_weights == 1).all() and (c.latent_weights == 1).all()) for c in chunks)
