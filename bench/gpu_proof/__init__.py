"""The parts of bench/gpu_suite.py: kernel checks and timings, core model calls, tiled VSR memory,
ahead-of-time Triton compilation and the --prepare folder. Each module has one job; gpu_suite.py
strings them together."""
