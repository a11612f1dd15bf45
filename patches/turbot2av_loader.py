"""TurboT2AV's student into core's own LTXAV MODEL, completed from the base LTX-2 19B checkpoint.

The student's tensors, the base's text connectors (where core's DiT holds them) and the base's metadata
config go through comfy.sd.load_diffusion_model_state_dict, so the result is exactly what UNETLoader makes
of a complete LTX-2 DiT file: core's detection, model sampling, LoRA keys, offloading, and the pack's speed
nodes apply as to any LTX-2 model. The base's video VAE comes out too, read alone (a checkpoint loader would
also load the teacher's 19B DiT just for it).
"""
from __future__ import annotations

import logging

import comfy.sd

from ..models import turbot2av
from . import core_compat, families


def _parts(student: turbot2av.Student, base_path, student_name: str, base_name: str) -> tuple[dict, dict]:
    connectors = core_compat.ltxav_dit_has_text_connectors()
    if student.converted is not None:
        return turbot2av.converted_parts(student, connectors)
    base = turbot2av.read_base(base_path, base_name)
    unexpected = turbot2av.check_fits(student, base, student_name, base_name)
    if unexpected:
        logging.warning("TurboT2AVLoader: '%s' has %d tensors LTX-2 does not use, left out: %s", student_name,
                        len(unexpected), ", ".join(unexpected[:8]))
    return turbot2av.merge(student, base, connectors)


def load_turbot2av(student_path, student_name: str, base_path, base_name: str):
    """(MODEL, Student) from TurboT2AV's model.pth (or a converted .safetensors) and the base checkpoint."""
    student = turbot2av.read_student(student_path, student_name)
    if student.dropped:
        logging.info("TurboT2AVLoader: '%s' was saved after acceleration; %d SLA / W8A8 / fused-QKV tensors left "
                     "out (the speed nodes rebuild them)", student_name, len(student.dropped))
    state_dict, metadata = _parts(student, base_path, student_name, base_name)
    model = comfy.sd.load_diffusion_model_state_dict(state_dict, metadata=metadata)
    family = families.family_of(model) if model is not None else None
    if family is None or family.name != "LTX-2":
        raise turbot2av.TurboT2AVError(f"student: ComfyUI did not load '{student_name}' as an LTX-2 model; load "
                                       f"TurboT2AV's {turbot2av.STUDENT_FILE} with base {turbot2av.BASE_FILE}")
    return model, student


def load_base_vae(base_path, base_name: str):
    """The base checkpoint's video VAE, built as core's checkpoint loader builds it, without its 19B DiT."""
    state_dict, metadata = turbot2av.read_base_vae(base_path, base_name)
    return comfy.sd.VAE(sd=state_dict, metadata=metadata)
