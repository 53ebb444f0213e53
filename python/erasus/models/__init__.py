"""Model wrappers: load Hugging Face models by id or local path, find their blocks, hook activations.

``transformers`` is imported on use (``pip install 'erasus-unlearn[llm]'``); importing this package is cheap.
"""

from .llm import CausalLM, activation_hooks, decoder_layers, load_causal_lm, load_smollm2

__all__ = ["CausalLM", "activation_hooks", "decoder_layers", "load_causal_lm", "load_smollm2"]
