"""Tiny random-weight checkpoints in the real key layouts, written as safetensors for ComfyUI's loaders.

Each family module lists its layout as {key: shape} and writes a file the stock loaders accept.
`write_all(models_dir)` writes one of each into the ComfyUI folder names and returns their names;
families a host lacks (SeedVR2 before ComfyUI 0.29) are left out.
"""
import pathlib

from . import ltx2, ltxv, seedvr2, wan


def write_all(models_dir: pathlib.Path) -> dict:
    models_dir = pathlib.Path(models_dir)
    written = {
        "ltxv_dit": ltxv.write_dit(models_dir / "diffusion_models" / "tiny_ltxv_dit.safetensors"),
        "ltxv_dit_d64": ltxv.write_dit(models_dir / "diffusion_models" / "tiny_ltxv_dit_d64.safetensors",
                                       head_dim=64, heads=2, seed=5),
        "ltxv_checkpoint": ltxv.write_checkpoint(models_dir / "checkpoints" / "tiny_ltxv.safetensors"),
        "ltx2_dit": ltx2.write_dit(models_dir / "diffusion_models" / "tiny_ltx2_19b_dit.safetensors"),
        "ltx2_checkpoint": ltx2.write_checkpoint(models_dir / "checkpoints" / "tiny_ltx2_19b.safetensors"),
        "wan_dit": wan.write_dit(models_dir / "diffusion_models" / "tiny_wan21_t2v.safetensors"),
        "wan_vae": wan.write_vae(models_dir / "vae" / "tiny_wan21_vae.safetensors"),
    }
    if seedvr2.host_has_seedvr2():
        seedvr2.install_core_width_hooks()
        written["seedvr2_dit"] = seedvr2.write_dit(models_dir / "diffusion_models" / "tiny_seedvr2_3b.safetensors")
        written["seedvr2_vae"] = seedvr2.write_vae(models_dir / "vae" / "tiny_seedvr2_vae.safetensors")
    return written
