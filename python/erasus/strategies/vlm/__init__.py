"""Vision-language (CLIP-style) unlearning strategies (one file each); they register themselves on import.

They take a model with ``get_image_features`` / ``get_text_features`` (a transformers ``CLIPModel`` or an
:class:`erasus.models.CLIPWrapper`) and image-text pairs (the ``"contrastive"`` task), and reach into the towers
only through the wrapper's parameter groups.
"""

from . import clip_erase, concept_projection, contrastive_unlearning, modality_decoupling, zero_shot_class

__all__ = ["clip_erase", "concept_projection", "contrastive_unlearning", "modality_decoupling", "zero_shot_class"]
