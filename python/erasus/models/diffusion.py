"""Text-to-image diffusion models behind one interface: :class:`StableDiffusionWrapper`.

It wraps a diffusers ``StableDiffusionPipeline`` (SD 1.x / 2.x layouts: ``UNet2DConditionModel`` with
cross-attention on a ``CLIPTextModel``, ``AutoencoderKL``, a scheduler; ``epsilon`` or ``v_prediction``), a folder
saved with ``save_pretrained`` (found by its ``model_index.json``), or a mapping of components. Without a VAE it is a
pixel-space model: latents are the images mapped to [-1, 1] (``x -> 2x - 1``), so a small text-conditioned UNet
trained on pixels goes through the same strategies.

What strategies need: :meth:`~StableDiffusionWrapper.encode_prompt`, :meth:`~StableDiffusionWrapper.parameter_groups`
(``cross_attn`` = every ``attn2``, ``cross_attn_kv`` = ``attn2.to_k`` / ``attn2.to_v``, ``non_cross_attn``, ``unet``,
``text_encoder``, ``vae``; STYLE 20), seeded sampling (:meth:`~StableDiffusionWrapper.sample` with a stop step for
the partial sampling ESD trains on, :meth:`~StableDiffusionWrapper.generate`) and cross-attention maps through
attention processors (:meth:`~StableDiffusionWrapper.get_cross_attention_maps`).

Left out: SDXL (two text encoders, pooled ``added_cond_kwargs``) and other pipelines whose UNet needs extra
conditioning; the wrapper refuses them with a clear error. :func:`tiny_pipeline` / :func:`tiny_components` build a
small randomly initialised model offline (diffusers' own test recipe) for tests, examples and training from scratch.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ErasusTypeError, InvalidInputError, require
from ..registry import register_model

__all__ = ["StableDiffusionWrapper", "is_diffusion_folder", "tiny_components", "tiny_pipeline"]

GROUPS = ("cross_attn", "cross_attn_kv", "non_cross_attn", "unet", "text_encoder", "vae")
_REQUIRED = ("unet", "text_encoder", "tokenizer", "scheduler")


def _diffusers() -> Any:
    return require("diffusers", "diffusion", purpose="diffusion models")


def is_diffusion_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a local folder saved by a diffusers pipeline (it holds ``model_index.json``)."""
    return (Path(path).expanduser() / "model_index.json").is_file()


def _load_folder(path: Path) -> dict[str, Any]:
    """The components listed in ``model_index.json``, each loaded from its subfolder by its own class."""
    import importlib

    index = json.loads((path / "model_index.json").read_text())
    components: dict[str, Any] = {}
    for name in ("unet", "text_encoder", "tokenizer", "scheduler", "vae"):
        entry = index.get(name)
        if not entry or entry[0] is None or not (path / name).is_dir():
            continue
        library, cls_name = entry
        module = importlib.import_module(require(library, "diffusion").__name__)
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise InvalidInputError(f"{path}/model_index.json names {library}.{cls_name} for {name}, which "
                                    f"{library} does not have")
        try:
            components[name] = cls.from_pretrained(path / name)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"could not load the {name} of {str(path)!r}: {exc}") from None
    if "text_encoder_2" in index and index.get("text_encoder_2", [None])[0] is not None:
        raise InvalidInputError(f"{str(path)!r} is an SDXL-style pipeline (two text encoders); erasus wraps SD 1.x / "
                                "2.x layouts (one CLIP text encoder) only")
    missing = [n for n in _REQUIRED if n not in components]
    if missing:
        raise InvalidInputError(f"{str(path)!r} has no {', '.join(missing)}: a text-to-image diffusion folder needs "
                                f"{', '.join(_REQUIRED)} (and optionally vae)")
    return components


class _CrossAttentionStore:
    """diffusers' classic ``AttnProcessor`` computation that also keeps ``softmax(QK^T / sqrt(d))`` of the
    cross-attention layers (``attn2``), averaged over heads: ``(batch, pixels, tokens)``."""

    def __init__(self, name: str, store: dict[str, torch.Tensor]) -> None:
        self.name, self.store = name, store

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key, value = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)
        self.store[self.name] = probs.reshape(batch_size, attn.heads, *probs.shape[1:]).mean(1).detach()
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@register_model("stable_diffusion")
class StableDiffusionWrapper(nn.Module):
    """A text-to-image diffusion model (UNet, text encoder, tokenizer, VAE or none, scheduler) as one ``nn.Module``.

    Args:
        path_or_pipeline: a diffusers ``StableDiffusionPipeline`` (its modules are shared, not copied: strategies
            work on a deep copy by default), a local folder saved with ``save_pretrained`` (``model_index.json``),
            another wrapper, or a mapping with ``unet``, ``text_encoder``, ``tokenizer``, ``scheduler`` and
            optionally ``vae`` (``None`` or absent: a pixel-space model).
        device: move the modules there.

    The UNet, text encoder and VAE are submodules, so ``parameters()``, ``state_dict()``, ``deepcopy`` and ``.to``
    cover them; the tokenizer and scheduler are plain attributes. ``get_model("stable_diffusion", ...)`` builds one.
    """

    def __init__(self, path_or_pipeline: Any = None, *, device: Any = None) -> None:
        super().__init__()
        components = self._components(path_or_pipeline, device=device)
        unet, text_encoder = components["unet"], components["text_encoder"]
        if not (isinstance(unet, nn.Module) and hasattr(unet, "config")
                and getattr(unet.config, "cross_attention_dim", None)):
            raise ErasusTypeError(f"the unet must be a text-conditioned diffusers UNet (cross_attention_dim set), got "
                                  f"{type(unet).__name__}")
        if getattr(unet.config, "addition_embed_type", None) is not None:
            raise InvalidInputError("this UNet needs added conditioning (SDXL-style text_time embeddings); erasus "
                                    "wraps SD 1.x / 2.x layouts only")
        if not isinstance(text_encoder, nn.Module):
            raise ErasusTypeError(f"text_encoder must be an nn.Module, got {type(text_encoder).__name__}")
        for name in ("tokenizer", "scheduler"):
            if components.get(name) is None:
                raise InvalidInputError(f"a diffusion model needs a {name}")
        self.unet = unet
        self.text_encoder = text_encoder
        self.vae = components.get("vae")
        self.tokenizer = components["tokenizer"]
        self.scheduler = components["scheduler"]
        if device is not None:
            self.to(device)

    @staticmethod
    def _components(source: Any, *, device: Any) -> dict[str, Any]:
        if source is None:
            raise InvalidInputError("StableDiffusionWrapper needs a diffusers pipeline, a saved pipeline folder or a "
                                    "mapping of its components")
        if isinstance(source, StableDiffusionWrapper):
            return {"unet": source.unet, "text_encoder": source.text_encoder, "vae": source.vae,
                    "tokenizer": source.tokenizer, "scheduler": source.scheduler}
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).expanduser()
            if not path.exists():
                raise InvalidInputError(f"{str(source)!r} does not exist")
            if not is_diffusion_folder(path):
                raise InvalidInputError(f"{str(source)!r} is not a diffusers pipeline folder (no model_index.json); "
                                        "save one with pipeline.save_pretrained(path)")
            return _load_folder(path)
        if isinstance(source, Mapping):
            unknown = sorted(set(source) - set(_REQUIRED) - {"vae"})
            if unknown:
                raise InvalidInputError(f"unknown component(s) {unknown}; expected {list(_REQUIRED)} and vae")
            missing = [n for n in _REQUIRED if source.get(n) is None]
            if missing:
                raise InvalidInputError(f"the components lack {', '.join(missing)}")
            return dict(source)
        components = getattr(source, "components", None)
        if isinstance(components, Mapping) and "unet" in components:
            if components.get("text_encoder_2") is not None:
                raise InvalidInputError(f"{type(source).__name__} has two text encoders (SDXL); erasus wraps SD 1.x / "
                                        "2.x layouts only")
            missing = [n for n in _REQUIRED if components.get(n) is None]
            if missing:
                raise InvalidInputError(f"{type(source).__name__} lacks {', '.join(missing)}")
            return {n: components.get(n) for n in (*_REQUIRED, "vae")}
        raise ErasusTypeError(f"{type(source).__name__} is not a diffusion pipeline: expected a diffusers "
                              "StableDiffusionPipeline, a saved pipeline folder or a mapping of its components")

    # ------------------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def pixel_space(self) -> bool:
        """True without a VAE: the UNet denoises images in [-1, 1] directly."""
        return self.vae is None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of what the UNet denoises at its configured sample size."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return int(self.unet.config.in_channels), int(h), int(w)

    @property
    def image_channels(self) -> int:
        return int(self.unet.config.in_channels if self.vae is None else self.vae.config.in_channels)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def prediction_type(self) -> str:
        return str(getattr(self.scheduler.config, "prediction_type", "epsilon"))

    # ------------------------------------------------------------------------------------- text
    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``prompts``, padded to the tokenizer's ``model_max_length`` (as SD does)."""
        prompts = _check_prompts(prompts)
        out = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        return {"input_ids": out["input_ids"].to(self.device), "attention_mask": out["attention_mask"].to(self.device)}

    def encode_prompt(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """The text encoder's last hidden states ``(B, T, D)``: the UNet's cross-attention context (SD 1.x / 2.x).

        Gradients flow into the text encoder when it requires grad and grad mode is on."""
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = self.tokenize(prompts)["input_ids"]
        return self.text_encoder(ids)[0]

    def pooled_prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """One vector per prompt ``(B, D)``: the text encoder's pooled output (CLIP: the end-of-text token)."""
        out = self.text_encoder(self.tokenize(prompts)["input_ids"])
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out[0].mean(1)

    # ------------------------------------------------------------------------------------- latents
    def latents_of(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1] ``(B, C, H, W)`` -> what the UNet denoises: the VAE latent mean times its scaling factor
        (a sample from the posterior with ``generator``), or ``2x - 1`` in pixel space."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise InvalidInputError(f"images must be a (B, C, H, W) tensor, got "
                                    f"{getattr(images, 'shape', type(images).__name__)}")
        if images.shape[1] != self.image_channels:
            raise InvalidInputError(f"images have {images.shape[1]} channels; this model takes {self.image_channels}")
        x = images.to(self.device, self.dtype) * 2 - 1
        if self.vae is None:
            return x
        dist = self.vae.encode(x).latent_dist
        z = dist.mean if generator is None else dist.mean + dist.std * torch.randn(
            dist.mean.shape, generator=generator).to(dist.mean)
        return z * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1] ``(B, C, H, W)``."""
        x = latents if self.vae is None else self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ((x + 1) / 2).clamp(0, 1)

    def noise_prediction(self, latents: torch.Tensor, timesteps: torch.Tensor | int,
                         context: torch.Tensor) -> torch.Tensor:
        """The UNet's output (noise, or velocity for ``v_prediction``) for ``latents`` at ``timesteps`` given the
        text ``context`` ``(B, T, D)``."""
        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.tensor(timesteps)
        timesteps = timesteps.to(latents.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(latents.shape[0])
        return self.unet(latents, timesteps, encoder_hidden_states=context).sample

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor | int,
                prompts: str | Sequence[str] | torch.Tensor) -> torch.Tensor:
        """:meth:`noise_prediction` with prompts (strings, or an already encoded context)."""
        context = prompts if isinstance(prompts, torch.Tensor) else self.encode_prompt(prompts)
        return self.noise_prediction(latents, timesteps, context)

    # ------------------------------------------------------------------------------------- sampling
    def sample(self, prompts: str | Sequence[str], *, num_inference_steps: int = 50, guidance_scale: float = 7.5,
               seed: int = 0, negative_prompt: str = "", stop_at: int | None = None,
               latents: torch.Tensor | None = None, unet: nn.Module | None = None,
               progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier-free-guided sampling with the wrapper's scheduler: ``(latents, t)``.

        ``eps = eps(x, "") + g * (eps(x, c) - eps(x, ""))`` at each of ``num_inference_steps`` scheduler steps; with
        ``stop_at=k`` only the first ``k`` steps run and ``t`` is the timestep the returned ``x_t`` sits at (ESD's
        partial sampling), else ``t`` is 0 and the latents are clean. Noise comes from a CPU generator seeded with
        ``seed``, so a seed gives the same images on every device. ``unet`` replaces the wrapper's own (a frozen copy).
        """
        from tqdm.auto import tqdm

        prompts = [prompts] if isinstance(prompts, str) else _check_prompts(prompts)
        if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise InvalidInputError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if stop_at is not None and not (isinstance(stop_at, int) and 0 <= stop_at <= num_inference_steps):
            raise InvalidInputError(f"stop_at must be an integer in [0, {num_inference_steps}], got {stop_at!r}")
        unet = self.unet if unet is None else unet
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        generator = torch.Generator().manual_seed(int(seed))
        b = len(prompts)
        if latents is None:
            latents = torch.randn((b, *self.latent_shape), generator=generator).to(self.device, self.dtype)
            latents = latents * scheduler.init_noise_sigma
        guided = guidance_scale != 1.0
        context = self.encode_prompt(prompts)
        if guided:
            context = torch.cat([self.encode_prompt([negative_prompt] * b), context])
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        timesteps = scheduler.timesteps
        run = timesteps if stop_at is None else timesteps[:stop_at]
        for t in tqdm(run, disable=not progress, leave=False, desc="sampling"):
            x = torch.cat([latents] * 2) if guided else latents
            x = scheduler.scale_model_input(x, t)
            eps = unet(x, t.expand(x.shape[0]), encoder_hidden_states=context).sample
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        t_out = timesteps[stop_at] if stop_at is not None and stop_at < len(timesteps) else torch.tensor(0)
        return latents, t_out.to(self.device)

    @torch.no_grad()
    def generate(self, prompts: str | Sequence[str], *, num_inference_steps: int = 50, guidance_scale: float = 7.5,
                 seed: int = 0, negative_prompt: str = "", progress: bool = False) -> torch.Tensor:
        """Images in [0, 1] ``(B, C, H, W)`` for ``prompts``, reproducible for a ``seed`` (see :meth:`sample`)."""
        latents, _ = self.sample(prompts, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                 seed=seed, negative_prompt=negative_prompt, progress=progress)
        return self.decode(latents).float().cpu()

    # ------------------------------------------------------------------------------------- attention
    def cross_attention_modules(self) -> dict[str, nn.Module]:
        """Every cross-attention layer of the UNet (``attn2``), by qualified name."""
        return {name: m for name, m in self.unet.named_modules() if name.endswith("attn2") and hasattr(m, "to_k")}

    @contextlib.contextmanager
    def _recording(self) -> Iterator[dict[str, torch.Tensor]]:
        store: dict[str, torch.Tensor] = {}
        modules = self.cross_attention_modules()
        saved = {name: m.processor for name, m in modules.items()}
        try:
            for name, m in modules.items():
                m.set_processor(_CrossAttentionStore(name, store))
            yield store
        finally:
            for name, m in modules.items():
                m.set_processor(saved[name])

    @torch.no_grad()
    def get_cross_attention_maps(self, prompt: str | Sequence[str], *, latents: torch.Tensor | None = None,
                                 timestep: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Cross-attention probabilities of every ``attn2`` layer for one UNet call: name -> ``(B, H, W, T)``, the
        softmax over the ``T`` prompt tokens at each spatial position, averaged over heads (so each map sums to 1
        over tokens), as in Prompt-to-Prompt (Hertz et al. 2022). ``latents`` default to seeded noise at
        ``timestep`` (default the middle of the schedule); the wrapper's attention processors are restored after."""
        prompts = [prompt] if isinstance(prompt, str) else _check_prompts(prompt)
        if latents is None:
            generator = torch.Generator().manual_seed(int(seed))
            latents = torch.randn((len(prompts), *self.latent_shape), generator=generator).to(self.device, self.dtype)
        t = self.num_train_timesteps // 2 if timestep is None else int(timestep)
        if not 0 <= t < self.num_train_timesteps:
            raise InvalidInputError(f"timestep must be in [0, {self.num_train_timesteps}), got {timestep!r}")
        context = self.encode_prompt(prompts)
        with self._recording() as store:
            self.noise_prediction(latents, t, context)
        out = {}
        for name, probs in store.items():
            b, pixels, tokens = probs.shape
            # the layer's resolution: the latent grid downsampled by a power of two
            _, h, w = self.latent_shape
            scale = int(round((h * w / pixels) ** 0.5))
            out[name] = probs.reshape(b, h // scale, w // scale, tokens)
        return out

    # ------------------------------------------------------------------------------------- groups
    def named_parameter_groups(self, *, layer_types: tuple[type, ...] | None = None) -> dict[str, list[str]]:
        """Parameter names (as in ``self.named_parameters()``) per group: ``cross_attn`` (every parameter inside a
        UNet ``attn2`` block), ``cross_attn_kv`` (``attn2.to_k`` / ``attn2.to_v``), ``non_cross_attn`` (the rest of the
        UNet), ``unet``, ``text_encoder`` and ``vae`` (empty in pixel space). ``layer_types`` keeps only parameters
        owned by modules of those types (ESD trains ``Linear`` / ``Conv2d`` weights only, not norms)."""
        groups: dict[str, list[str]] = {g: [] for g in GROUPS}
        for prefix, root in (("unet", self.unet), ("text_encoder", self.text_encoder), ("vae", self.vae)):
            if root is None:
                continue
            for mod_name, module in root.named_modules():
                if layer_types is not None and not isinstance(module, layer_types):
                    continue
                for p_name, _ in module.named_parameters(recurse=False):
                    full = f"{mod_name}.{p_name}" if mod_name else p_name
                    name = f"{prefix}.{full}"
                    groups[prefix].append(name)
                    if prefix != "unet":
                        continue
                    parts = mod_name.split(".")
                    if "attn2" in parts:
                        groups["cross_attn"].append(name)
                        at = parts.index("attn2")
                        if len(parts) > at + 1 and parts[at + 1] in ("to_k", "to_v"):
                            groups["cross_attn_kv"].append(name)
                    else:
                        groups["non_cross_attn"].append(name)
        return groups

    def parameter_groups(self, *, layer_types: tuple[type, ...] | None = None) -> dict[str, list[nn.Parameter]]:
        """The parameters of :meth:`named_parameter_groups`."""
        params = dict(self.named_parameters())
        return {g: [params[n] for n in names] for g, names in self.named_parameter_groups(layer_types=layer_types).items()}

    def task(self, **options: Any) -> Any:
        """A :class:`~erasus.tasks.diffusion.DiffusionTask` for this model."""
        from ..tasks.diffusion import DiffusionTask

        return DiffusionTask(**options)

    # ------------------------------------------------------------------------------------- saving
    def to_pipeline(self) -> Any:
        """A diffusers ``StableDiffusionPipeline`` sharing these modules (needs a VAE)."""
        if self.vae is None:
            raise InvalidInputError("a pixel-space model (no VAE) has no StableDiffusionPipeline form; use "
                                    "save_pretrained / StableDiffusionWrapper(path) instead")
        diffusers = _diffusers()
        return diffusers.StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                                 unet=self.unet, scheduler=self.scheduler, safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Save in the diffusers folder layout (``model_index.json`` + one subfolder per component), which
        ``StableDiffusionWrapper(path)`` and ``ErasusUnlearner(model_name=path)`` load; with a VAE the folder is also
        a regular ``StableDiffusionPipeline.from_pretrained`` folder."""
        folder = Path(path).expanduser()
        if self.vae is not None:
            self.to_pipeline().save_pretrained(folder)
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        index: dict[str, Any] = {"_class_name": "StableDiffusionWrapper", "vae": [None, None]}
        for name in ("unet", "text_encoder", "tokenizer", "scheduler"):
            component = getattr(self, name)
            component.save_pretrained(folder / name)
            index[name] = [type(component).__module__.split(".")[0], type(component).__name__]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
        return folder


def _check_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InvalidInputError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise InvalidInputError("the prompt list is empty")
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise InvalidInputError(f"prompts must be strings, got {type(bad[0]).__name__}")
    return prompts


def tiny_components(*, seed: int = 0, sample_size: int = 8, pixel_space: bool = False, image_channels: int = 3,
                    block_out_channels: Sequence[int] = (16, 32), cross_attention_dim: int = 32,
                    text_hidden_size: int = 32, text_layers: int = 2, max_text_length: int = 32,
                    prediction_type: str = "epsilon") -> dict[str, Any]:
    """The components of a small randomly initialised text-to-image model, built offline with diffusers' own test
    recipe (``tests/pipelines/stable_diffusion/test_stable_diffusion.py``: ``UNet2DConditionModel`` with one
    cross-attention down/up block, ``AutoencoderKL``, ``CLIPTextModel`` from a small ``CLIPTextConfig``) plus a
    character-level ``CLIPTokenizer`` (:func:`erasus.models.character_clip_tokenizer`) and SD's DDIM schedule
    (scaled-linear betas 0.00085..0.012).

    ``sample_size`` is the UNet's latent size (images are twice that with the VAE); ``pixel_space=True`` drops the
    VAE: the UNet denoises ``image_channels``-channel images of ``sample_size`` pixels directly.
    ``StableDiffusionWrapper(tiny_components(...))`` wraps them; :func:`tiny_pipeline` makes a diffusers pipeline.
    """
    diffusers = _diffusers()
    transformers = require("transformers", "llm", purpose="the CLIP text encoder")
    from .clip import character_clip_tokenizer

    blocks = tuple(int(c) for c in block_out_channels)
    if len(blocks) < 2 or any(c <= 0 or c % 8 for c in blocks):
        raise InvalidInputError(f"block_out_channels needs two or more multiples of 8, got {block_out_channels!r}")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise InvalidInputError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(blocks) - 1)
    up = ("CrossAttnUpBlock2D",) * (len(blocks) - 1) + ("UpBlock2D",)
    latent_channels = image_channels if pixel_space else 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=blocks, layers_per_block=1, sample_size=sample_size, in_channels=latent_channels,
            out_channels=latent_channels, down_block_types=down, up_block_types=up,
            cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=8)
        vae = None
        if not pixel_space:
            vae = diffusers.AutoencoderKL(
                block_out_channels=[blocks[0], blocks[0]], in_channels=image_channels, out_channels=image_channels,
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                latent_channels=4, norm_num_groups=8, sample_size=2 * sample_size)
        tokenizer = character_clip_tokenizer()
        tokenizer.model_max_length = max_text_length
        config = transformers.CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, hidden_size=text_hidden_size, projection_dim=text_hidden_size,
            intermediate_size=2 * text_hidden_size, layer_norm_eps=1e-05, num_attention_heads=4,
            num_hidden_layers=text_layers, vocab_size=len(tokenizer), max_position_embeddings=max_text_length)
        if cross_attention_dim != text_hidden_size:
            raise InvalidInputError(f"cross_attention_dim ({cross_attention_dim}) must equal text_hidden_size "
                                    f"({text_hidden_size}): the UNet attends to the text encoder's hidden states")
        text_encoder = transformers.CLIPTextModel(config)
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                        prediction_type=prediction_type)
    for m in (unet, vae, text_encoder):
        if m is not None:
            m.eval()
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def tiny_pipeline(*, seed: int = 0, sample_size: int = 8, **options: Any) -> Any:
    """A small randomly initialised diffusers ``StableDiffusionPipeline`` (:func:`tiny_components`, with a VAE),
    no network needed: ``pipe.save_pretrained(path)`` then ``StableDiffusionWrapper(path)`` or
    ``ErasusUnlearner(model_name=path, strategy="esd")``."""
    if options.get("pixel_space"):
        raise InvalidInputError("a StableDiffusionPipeline has a VAE; for a pixel-space model use "
                                "StableDiffusionWrapper(tiny_components(pixel_space=True))")
    parts = tiny_components(seed=seed, sample_size=sample_size, **options)
    return _diffusers().StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                                requires_safety_checker=False)
