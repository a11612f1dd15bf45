"""kernels/fastest.py: the measured choice between interchangeable implementations."""
import time

from turbovideo.kernels.fastest import Fastest


def _candidate(name, seconds, log):
    def run():
        log.append(name)
        time.sleep(seconds)
        return name

    return run


def test_the_fastest_wins_and_is_remembered_per_key():
    log, fastest = [], Fastest(repeats=3)
    candidates = {"slow": _candidate("slow", 0.02, log), "fast": _candidate("fast", 0.002, log)}
    assert fastest.run("k", candidates) == "fast"  # the winner's own output
    assert fastest.chosen("k") == "fast" and fastest.timings["k"]["slow"] > fastest.timings["k"]["fast"]
    log.clear()
    assert fastest.run("k", candidates) == "fast" and log == ["fast"]  # no second measurement
    swapped = {"slow": _candidate("slow", 0.002, log), "fast": _candidate("fast", 0.02, log)}
    assert fastest.run("other", swapped) == "slow"  # another key is measured on its own


def test_a_far_slower_candidate_is_dropped_after_one_timed_run():
    log, fastest = [], Fastest(repeats=4, drop_factor=4.0)
    fastest.run("k", {"crawl": _candidate("crawl", 0.05, log), "fast": _candidate("fast", 0.001, log)})
    assert log.count("crawl") == 2 and log.count("fast") == 5  # warm-up + one timed run, vs warm-up + 4


def test_preferred_keeps_a_close_race():
    log, fastest = [], Fastest(repeats=2, margin=3.0)
    candidates = {"other": _candidate("other", 0.004, log), "mine": _candidate("mine", 0.006, log)}
    assert fastest.run("k", candidates, preferred="mine") == "mine"
    assert Fastest(repeats=2, margin=1.05).run("k", candidates, preferred="mine") == "other"


def test_a_single_candidate_is_not_measured():
    log, fastest = [], Fastest()
    assert fastest.run("k", {"only": _candidate("only", 0.0, log)}) == "only" and log == ["only"]
