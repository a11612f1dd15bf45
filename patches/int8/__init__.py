"""W8A8 INT8 linears on a MODEL, in one-job files (the math is kernels/int8*.py, the file format
models/int8_format.py):

  layer.py     the pack's own INT8 Linear (ComfyUI 0.8's path; block-128 weights everywhere)
  native.py    core's native INT8 Linears (0.27+) and the pack's GEMM under them where it is faster
  quantize.py  which Linears of a model (asked of patches/families), and TurboQuantizeINT8's work
  files.py     TurboSaveQuantized / TurboLoadQuantized / TurboDiTLoader's reading and writing of files
"""
