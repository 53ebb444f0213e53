"""Model wrappers: load Hugging Face models by id or local path, find their blocks, hook activations,
embed text, wrap CLIP-style dual encoders, multimodal LMs and Stable Diffusion pipelines.

``transformers`` is imported on use (``pip install 'erasus-unlearn[llm]'``); importing this package is cheap.
"""

from .bert import BERTWrapper
from .blip import BLIP2Wrapper, BLIPWrapper
from .clip import CLIPWrapper, character_clip_tokenizer, clip_parameter_groups, is_clip_config, load_clip, small_clip
from .diffusion import StableDiffusionWrapper, is_diffusion_folder, tiny_components, tiny_pipeline
from .llava import LLaVAWrapper
from .llm import (
    CausalLM,
    GPTWrapper,
    LLaMAWrapper,
    MistralWrapper,
    activation_hooks,
    decoder_layers,
    layer_activations,
    load_causal_lm,
    load_smollm2,
)
from .text_encoder import SentenceEncoder, load_minilm, mean_pool
from .whisper import WhisperWrapper, char_whisper_processor, small_whisper, whisper_parameter_groups
from .videomae import VideoMAEWrapper, is_videomae_config, load_videomae

__all__ = ["BERTWrapper", "BLIP2Wrapper", "BLIPWrapper", "CLIPWrapper", "CausalLM", "GPTWrapper", "LLaMAWrapper",
           "LLaVAWrapper", "MistralWrapper", "SentenceEncoder", "StableDiffusionWrapper", "activation_hooks", "character_clip_tokenizer",
           "clip_parameter_groups", "decoder_layers", "is_clip_config", "is_diffusion_folder", "layer_activations", "load_causal_lm",
           "load_clip", "load_minilm", "load_smollm2", "mean_pool", "small_clip", "tiny_components",
           "tiny_pipeline"]
__all__ += ["WhisperWrapper", "char_whisper_processor", "small_whisper", "whisper_parameter_groups"]
__all__ += ["VideoMAEWrapper", "is_videomae_config", "load_videomae"]
