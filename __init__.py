"""TurboVideo: Turbo2K, TurboVSR and TurboDiffusion as ComfyUI nodes.

ComfyUI imports this file from custom_nodes/<folder>; it calls comfy_entrypoint() and registers the
nodes of the returned extension. Nothing here imports comfy at import time, so the pure layers
(samplers/, models/, kernels/) stay importable without the host.
"""

WEB_DIRECTORY = None


def comfy_entrypoint():
    from .nodes.extension import TurboVideoExtension

    return TurboVideoExtension()
