"""API-format prompts for the tiny models, built from small pieces so tests can swap one node."""


def conditioning_node(seed=0, attention_mask=True):
    """TurboTestConditioning: 8 random T5-width tokens (with a mask for LTX-Video, none for Wan)."""
    return {"class_type": "TurboTestConditioning",
            "inputs": {"tokens": 8, "width": 4096, "seed": seed, "attention_mask": attention_mask}}


def ltxv_checkpoint_nodes(checkpoint, frames=9, size=64, text_seed=0):
    """Loader, test conditioning and an empty LTX latent: ids 'ckpt', 'pos', 'neg', 'latent'."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "pos": conditioning_node(text_seed, True),
        "neg": conditioning_node(text_seed + 1, True),
        "latent": {"class_type": "EmptyLTXVLatentVideo",
                   "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}},
    }


def wan_nodes(dit, vae, frames=5, size=32, text_seed=0):
    """UNETLoader + VAELoader, test conditioning and an empty Wan latent."""
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": dit, "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "pos": conditioning_node(text_seed, False),
        "neg": conditioning_node(text_seed + 1, False),
        "latent": {"class_type": "EmptyHunyuanLatentVideo",
                   "inputs": {"width": size, "height": size, "length": frames, "batch_size": 1}},
    }


def ksampler(model, latent, seed=7, steps=2, sampler="euler", scheduler="simple", cfg=1.0):
    return {"class_type": "KSampler", "inputs": {
        "model": model, "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
        "scheduler": scheduler, "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": latent, "denoise": 1.0}}


def custom_sampler_nodes(model, latent, sampler, sigmas, seed=7):
    """NOISE + GUIDER + the given SAMPLER/SIGMAS links into SamplerCustomAdvanced, id 'sample'."""
    return {
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "guider": {"class_type": "BasicGuider", "inputs": {"model": model, "conditioning": ["pos", 0]}},
        "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": sampler, "sigmas": sigmas,
            "latent_image": latent}},
    }


def decode_and_capture(vae, samples, key="images"):
    return {
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": vae}},
        "capture": {"class_type": "TurboTestCapture", "inputs": {"value": ["decode", 0], "key": key}},
    }


def capture(value, key, node_id=None):
    return {node_id or f"capture_{key}": {"class_type": "TurboTestCapture",
                                          "inputs": {"value": value, "key": key}}}
