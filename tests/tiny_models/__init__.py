"""Tiny random-weight checkpoints in the real key layouts, written as safetensors for ComfyUI's loaders.

Each family module lists its layout as {key: shape} and writes a file the stock loaders accept.
`write_all(models_dir)` writes one of each into the ComfyUI folder names and returns their names;
families a host lacks (SeedVR2 before ComfyUI 0.29) are left out.
"""
import pathlib

from . import ltx2, ltx2_vae, ltxv, seedvr2, wan


def write_all(models_dir: pathlib.Path) -> dict:
    models_dir = pathlib.Path(models_dir)
    written = {
        "ltxv_dit": ltxv.write_dit(models_dir / "diffusion_models" / "tiny_ltxv_dit.safetensors"),
        "ltxv_dit_d64": ltxv.write_dit(models_dir / "diffusion_models" / "tiny_ltxv_dit_d64.safetensors",
                                       head_dim=64, heads=2, seed=5),
        "ltxv_checkpoint": ltxv.write_checkpoint(models_dir / "checkpoints" / "tiny_ltxv.safetensors"),
        "ltx2_dit": ltx2.write_dit(models_dir / "diffusion_models" / "tiny_ltx2_19b_dit.safetensors"),
        "ltx2_checkpoint": ltx2.write_checkpoint(models_dir / "checkpoints" / "tiny_ltx2_19b.safetensors"),
        "ltx23_dit": ltx2.write_dit(models_dir / "diffusion_models" / "tiny_ltx23_dit.safetensors",
                                    ltx2.TRANSFORMER_23, seed=15),
        "ltx2_dit_d64": ltx2.write_dit(models_dir / "diffusion_models" / "tiny_ltx2_19b_dit_d64.safetensors",
                                       ltx2.TRANSFORMER_19B_D64, seed=14),
        "ltx2_upsampler": ltx2.write_upsampler(models_dir / "latent_upscale_models" /
                                               "tiny_ltx2_spatial_upscaler_x2.safetensors"),
        # core 0.29 only (0.8.0's VAELoader reads no metadata and its VideoVAE has no base widths)
        "ltx2_base8_vae": ltx2_vae.write_vae(models_dir / "vae" / "tiny_ltx2_19b_vae_base8.safetensors",
                                             ltx2_vae.LTX2_VAE_BASE8_CONFIG),
        "ltx23_vae": ltx2_vae.write_vae(models_dir / "vae" / "tiny_ltx23_vae.safetensors", ltx2_vae.LTX23_VAE_CONFIG),
        "wan_dit": wan.write_dit(models_dir / "diffusion_models" / "tiny_wan21_t2v.safetensors"),
        "wan_vae": wan.write_vae(models_dir / "vae" / "tiny_wan21_vae.safetensors"),
    }
    if seedvr2.host_has_seedvr2():
        seedvr2.install_core_width_hooks()
        written["seedvr2_dit"] = seedvr2.write_dit(models_dir / "diffusion_models" / "tiny_seedvr2_3b.safetensors")
        written["seedvr2_vae"] = seedvr2.write_vae(models_dir / "vae" / "tiny_seedvr2_vae.safetensors")
    return written
