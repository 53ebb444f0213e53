"""Concept erasure for text-to-image diffusion models (one file per method); they register themselves on import.

They take an :class:`erasus.models.StableDiffusionWrapper` (or a diffusers ``StableDiffusionPipeline``) and
prompts, and reach into the UNet only through the wrapper's parameter groups (``cross_attn``, ``cross_attn_kv``,
``non_cross_attn``, ``unet``).
"""

from . import concept_ablation, esd, salun, uce, unet_surgery

__all__ = ["concept_ablation", "esd", "salun", "uce", "unet_surgery"]
