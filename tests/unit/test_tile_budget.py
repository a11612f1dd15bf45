"""Auto tile size (samplers/tile_budget.py): the largest tile that fits, checked at the budget boundaries."""
import random

import pytest
from turbovideo.samplers import tile_budget

BYTES_PER_CELL = 1000.0


def linear_cost(t, h, w):
    return BYTES_PER_CELL * t * h * w


def test_budget_exactly_at_a_side_gives_that_side_and_one_byte_less_the_one_below():
    shape = (3, 40, 40)
    for side in (6, 17, 39):
        exact = linear_cost(3, side, side)
        assert tile_budget.largest_tile(shape, exact, linear_cost, overlap=4).side == side
        below = tile_budget.largest_tile(shape, exact - 1, linear_cost, overlap=4)
        assert below.side == side - 1 and below.fits and below.cost <= exact - 1


def test_whole_frame_when_it_fits_and_smallest_when_nothing_fits():
    shape = (2, 12, 30)  # non-square: rows stop growing at 12
    whole = tile_budget.largest_tile(shape, 1e12, linear_cost, overlap=3)
    assert whole == tile_budget.TileChoice(30, True, linear_cost(2, 12, 30))
    none = tile_budget.largest_tile(shape, linear_cost(2, 4, 4) - 1, linear_cost, overlap=3)
    assert none.side == 4 and not none.fits  # overlap + 1 is the smallest valid tile
    # between the two: rows capped at 12, columns grow alone
    mid = tile_budget.largest_tile(shape, linear_cost(2, 12, 20), linear_cost, overlap=3)
    assert mid.side == 20


def test_segments_set_the_window_frames():
    shape = (20, 16, 16)
    whole = tile_budget.largest_tile(shape, linear_cost(20, 8, 8), linear_cost, overlap=2)
    segmented = tile_budget.largest_tile(shape, linear_cost(20, 8, 8), linear_cost, overlap=2, segment=5)
    assert whole.side == 8 and segmented.side == 16  # 5 * 16 * 16 <= 20 * 8 * 8
    assert tile_budget.window_frames(20, 0) == 20 and tile_budget.window_frames(20, 30) == 20
    assert tile_budget.window_frames(20, 5) == 5


def test_result_is_the_largest_fitting_side_on_random_cases():
    rng = random.Random()
    for _ in range(200):
        shape = (rng.randint(1, 9), rng.randint(1, 70), rng.randint(1, 70))
        overlap = rng.randint(0, 6)
        budget = rng.uniform(0, linear_cost(*shape) * 1.2)
        choice = tile_budget.largest_tile(shape, budget, linear_cost, overlap)
        t, height, width = shape
        sides = [s for s in range(min(overlap + 1, max(height, width)), max(height, width) + 1)
                 if linear_cost(t, min(s, height), min(s, width)) <= budget]
        if sides:
            assert choice.fits and choice.side == max(sides), (shape, overlap, budget)
        else:
            assert not choice.fits


def test_model_call_cost_uses_the_batch_and_margin():
    seen = []

    def memory_required(shape):
        seen.append(shape)
        return 7.0

    cost = tile_budget.model_call_cost(memory_required, batch=2, channels=128)
    assert cost(3, 4, 5) == pytest.approx(10.5)
    assert seen == [[2, 128, 3, 4, 5]]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_budget.largest_tile((1, 4, 4), 1e9, linear_cost, overlap=-1)
    with pytest.raises(ValueError, match="positive"):
        tile_budget.largest_tile((0, 4, 4), 1e9, linear_cost, overlap=1)
