"""The one ComfyExtension of the pack: every node file contributes its NODES list."""
from comfy_api.latest import ComfyExtension

from . import (
    attention_nodes,
    dit_loader_nodes,
    int8_nodes,
    lrhr_nodes,
    sampler_nodes,
    shortcut_nodes,
    tiled_nodes,
    turbot2av_nodes,
    turbowan_nodes,
    vae_nodes,
    vsr_nodes,
)
from .model_folders import register_adapter_folder

NODE_MODULES = [sampler_nodes, shortcut_nodes, vae_nodes, int8_nodes, attention_nodes,
                turbowan_nodes, tiled_nodes, vsr_nodes, lrhr_nodes, dit_loader_nodes, turbot2av_nodes]


class TurboVideoExtension(ComfyExtension):
    async def get_node_list(self):
        register_adapter_folder()  # before the schemas, which list this folder (0.8 never calls on_load)
        return [node for module in NODE_MODULES for node in module.NODES]
