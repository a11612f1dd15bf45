"""Pick the fastest of interchangeable implementations by timing them on the real inputs, once per key.

A Fastest object remembers, per key (device, dtype, shapes, ... whatever makes the timing differ), the
name of the candidate that ran fastest; later calls with that key run it directly. Candidates are
zero-argument callables computing the same result (within the error budget of the operation). The
measurement, on the first call with a new key:
- every candidate runs once untimed (compilation, caches, weight prepacking happen there);
- then up to `repeats` timed rounds, one run of each candidate per round; after a round, a candidate
  slower than `drop_factor` times the fastest is not run again (a 100x slower path costs two runs);
- the fastest by minimum time wins, except that `preferred` (when given) keeps the choice unless another
  candidate beats it by `margin`: close races do not flip between runs of the program.
The winner's last output is returned, so the measuring call costs no extra run. CUDA work is
synchronised around each timed run. Pure torch: no ComfyUI imports.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import torch


def _elapsed(fn: Callable[[], object], cuda: bool) -> tuple[float, object]:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


class Fastest:
    def __init__(self, repeats: int = 2, margin: float = 1.1, drop_factor: float = 4.0):
        self.repeats, self.margin, self.drop_factor = repeats, margin, drop_factor
        self._chosen: dict[Hashable, str] = {}
        self.timings: dict[Hashable, dict[str, float]] = {}  # what each measurement saw, for reports

    def chosen(self, key: Hashable) -> str | None:
        return self._chosen.get(key)

    def clear(self):
        self._chosen.clear()
        self.timings.clear()

    def run(self, key: Hashable, candidates: dict[str, Callable[[], object]], cuda: bool = False,
            preferred: str | None = None):
        """The result of the fastest candidate for `key` (measured now if the key is new)."""
        name = self._chosen.get(key)
        if name is not None and name in candidates:
            return candidates[name]()
        if len(candidates) == 1:
            (name, fn), = candidates.items()
            self._chosen[key] = name
            return fn()
        return self._measure(key, candidates, cuda, preferred)

    def _measure(self, key, candidates, cuda, preferred):
        for fn in candidates.values():
            _elapsed(fn, cuda)
        best: dict[str, float] = {}
        outputs: dict[str, object] = {}
        alive = list(candidates)
        for _ in range(self.repeats):
            for name in alive:
                seconds, outputs[name] = _elapsed(candidates[name], cuda)
                best[name] = min(seconds, best.get(name, seconds))
            fastest = min(best[name] for name in alive)
            alive = [name for name in alive if best[name] <= self.drop_factor * fastest]
        winner = min(alive, key=best.get)
        if preferred in alive and best[winner] * self.margin > best[preferred]:
            winner = preferred
        self._chosen[key], self.timings[key] = winner, dict(best)
        return outputs[winner]
