"""Model wrappers: load Hugging Face models by id or local path, find their blocks, hook activations,
embed text.

``transformers`` is imported on use (``pip install 'erasus-unlearn[llm]'``); importing this package is cheap.
"""

from .blip import BLIP2Wrapper, BLIPWrapper
from .llava import LLaVAWrapper
from .llm import CausalLM, activation_hooks, decoder_layers, load_causal_lm, load_smollm2
from .text_encoder import SentenceEncoder, load_minilm, mean_pool

__all__ = ["BLIP2Wrapper", "BLIPWrapper", "LLaVAWrapper", "CausalLM", "SentenceEncoder", "activation_hooks", "decoder_layers", "load_causal_lm", "load_minilm",
           "load_smollm2", "mean_pool"]
