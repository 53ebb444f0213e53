"""Prompt sets and forget images for text-to-image concept erasure.

* CSV prompt sets in the layouts the erasure papers ship: I2P (Schramowski et al., CVPR 2023; columns ``prompt``,
  ``categories`` as a comma-separated list such as ``"violence, self-harm"``, ``hard``, ``evaluation_seed``,
  ``evaluation_guidance``) and ESD's artist / object lists (``rohitgandikota/erasing`` ``data/*.csv``: ``prompt``,
  ``evaluation_seed`` and a concept column such as ``artist`` or ``class``);
* generated sets: artist-style prompts from templates, and UnlearnCanvas' (Zhang et al., 2024) object x style grid
  ``"An {object} image in {style} style."``;
* a forget / retain split by concept, and forget images read from a folder or file list with PIL.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ErasusTypeError, InvalidInputError

__all__ = [
    "ARTIST_TEMPLATES",
    "UNLEARNCANVAS_TEMPLATE",
    "PromptSet",
    "artist_prompts",
    "i2p_prompts",
    "load_forget_images",
    "load_prompt_csv",
    "split_by_concept",
    "unlearncanvas_prompts",
]

#: artist-style templates in the spirit of ESD's ``data/big_artist_prompts.csv``
ARTIST_TEMPLATES = ("a painting in the style of {}", "an artwork by {}", "a landscape painted by {}",
                    "a portrait in the style of {}", "a famous artwork in the style of {}")
#: UnlearnCanvas' prompt template (Zhang et al., "UnlearnCanvas", 2024)
UNLEARNCANVAS_TEMPLATE = "An {object} image in {style} style."
_CONCEPT_COLUMNS = ("categories", "concept", "artist", "class", "object", "style")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class PromptSet:
    """Prompts with, per prompt, the concepts it belongs to and (when the CSV gives them) evaluation seed and
    guidance scale. ``concepts[i]`` is a tuple (I2P lists several categories per prompt)."""

    prompts: tuple[str, ...]
    concepts: tuple[tuple[str, ...], ...]
    seeds: tuple[int, ...] | None = None
    guidance: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if len(self.concepts) != n or any(len(x) != n for x in (self.seeds, self.guidance) if x is not None):
            raise InvalidInputError("a PromptSet needs one concepts / seeds / guidance entry per prompt")

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, keep: Sequence[bool]) -> PromptSet:
        idx = [i for i, k in enumerate(keep) if k]

        def pick(x: Any) -> Any:
            return None if x is None else tuple(x[i] for i in idx)

        return PromptSet(pick(self.prompts), pick(self.concepts), pick(self.seeds), pick(self.guidance))

    def with_concept(self, concepts: str | Iterable[str]) -> PromptSet:
        """The prompts tagged with any of ``concepts`` (case-insensitive)."""
        want = _concept_names(concepts)
        return self.select([any(c.lower() in want for c in cs) for cs in self.concepts])

    def all_concepts(self) -> list[str]:
        return sorted({c for cs in self.concepts for c in cs})


def _concept_names(concepts: str | Iterable[str]) -> set[str]:
    names = [concepts] if isinstance(concepts, str) else list(concepts)
    if not names or not all(isinstance(c, str) and c.strip() for c in names):
        raise InvalidInputError(f"concepts must be a non-empty string or list of strings, got {concepts!r}")
    return {c.strip().lower() for c in names}


def _split_tags(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


def load_prompt_csv(path: str | Path, *, prompt_column: str = "prompt", concept_column: str | None = None,
                    seed_column: str | None = "evaluation_seed",
                    guidance_column: str | None = "evaluation_guidance") -> PromptSet:
    """Read a prompt CSV. ``concept_column`` defaults to the first present of ``categories``, ``concept``,
    ``artist``, ``class``, ``object``, ``style`` (comma-separated values give several concepts); seed and guidance
    columns are read when present. Raises if the file or the prompt / named columns are missing, or a row is bad."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"prompt CSV {str(p)!r} does not exist")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h for h in (reader.fieldnames or []) if h is not None]
        rows = list(reader)
    if prompt_column not in header:
        raise InvalidInputError(f"{p.name} has no {prompt_column!r} column (columns: {header}); pass prompt_column=")
    if concept_column is not None and concept_column not in header:
        raise InvalidInputError(f"{p.name} has no {concept_column!r} column (columns: {header})")
    ccol = concept_column or next((c for c in _CONCEPT_COLUMNS if c in header), None)
    scol = seed_column if seed_column in header else None
    gcol = guidance_column if guidance_column in header else None
    if not rows:
        raise InvalidInputError(f"{p.name} has a header but no prompts")
    prompts, concepts, seeds, guidance = [], [], [], []
    for line, row in enumerate(rows, start=2):
        text = (row.get(prompt_column) or "").strip()
        if not text:
            raise InvalidInputError(f"{p.name} line {line}: empty {prompt_column!r}")
        prompts.append(text)
        concepts.append(_split_tags(row.get(ccol) or "") if ccol else ())
        for col, out, cast in ((scol, seeds, lambda v: int(float(v))), (gcol, guidance, float)):
            if col:
                try:
                    out.append(cast(row[col]))
                except (TypeError, ValueError):
                    raise InvalidInputError(f"{p.name} line {line}: {col!r} is {row[col]!r}, not a number") from None
    return PromptSet(tuple(prompts), tuple(concepts), tuple(seeds) if scol else None,
                     tuple(guidance) if gcol else None)


def i2p_prompts(path: str | Path, *, categories: str | Iterable[str] | None = None,
                hard_only: bool = False) -> PromptSet:
    """The I2P benchmark's prompts (``prompt``, ``categories``; ``hard`` = 1 for the prompts that most often
    produce inappropriate images), optionally only those in ``categories`` (e.g. ``"sexual"``) and/or hard ones."""
    ps = load_prompt_csv(path, concept_column="categories")
    if hard_only:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "hard" not in (reader.fieldnames or []):
                raise InvalidInputError(f"{Path(path).name} has no 'hard' column; pass hard_only=False")
            hard = [str(r.get("hard", "")).strip() in ("1", "1.0", "True", "true") for r in reader]
        ps = ps.select(hard)
    return ps.with_concept(categories) if categories is not None else ps


def artist_prompts(artists: Sequence[str], *, templates: Sequence[str] = ARTIST_TEMPLATES) -> PromptSet:
    """One prompt per artist and template (``template.format(artist)``), tagged with the artist."""
    names = [a.strip() for a in _strings(artists, "artists")]
    temps = _strings(templates, "templates")
    if not all("{}" in t for t in temps):
        raise InvalidInputError("every artist template needs one '{}' slot for the artist")
    pairs = [(t.format(a), (a,)) for a in names for t in temps]
    return PromptSet(tuple(p for p, _ in pairs), tuple(c for _, c in pairs))


def unlearncanvas_prompts(objects: Sequence[str], styles: Sequence[str], *,
                          template: str = UNLEARNCANVAS_TEMPLATE) -> PromptSet:
    """UnlearnCanvas' object x style grid, each prompt tagged with its object and its style."""
    objs, sts = _strings(objects, "objects"), _strings(styles, "styles")
    if "{object}" not in template or "{style}" not in template:
        raise InvalidInputError(f"template must contain '{{object}}' and '{{style}}', got {template!r}")
    pairs = [(template.format(object=o, style=s), (o, s)) for s in sts for o in objs]
    return PromptSet(tuple(p for p, _ in pairs), tuple(c for _, c in pairs))


def split_by_concept(prompts: PromptSet, forget: str | Iterable[str]) -> tuple[PromptSet, PromptSet]:
    """(forget, retain): prompts tagged with any concept in ``forget`` vs all others. Raises if either is empty."""
    want = _concept_names(forget)
    hit = [any(c.lower() in want for c in cs) for cs in prompts.concepts]
    if not any(hit):
        raise InvalidInputError(f"no prompt is tagged with {sorted(want)}; concepts present: "
                                f"{prompts.all_concepts()[:20]}")
    if all(hit):
        raise InvalidInputError(f"every prompt is tagged with {sorted(want)}; nothing is left to retain")
    return prompts.select(hit), prompts.select([not h for h in hit])


def _strings(xs: Any, name: str) -> list[str]:
    if isinstance(xs, str) or not isinstance(xs, Sequence) or not xs \
            or not all(isinstance(x, str) and x.strip() for x in xs):
        raise InvalidInputError(f"{name} must be a non-empty list of non-empty strings, got {xs!r:.80}")
    return list(xs)


def load_forget_images(source: str | Path | Sequence[str | Path], *, size: int | tuple[int, int] | None = None,
                       mode: str = "RGB") -> torch.Tensor:
    """Images as a float32 (N, C, H, W) tensor in [0, 1], from a folder (sorted ``.png/.jpg/.jpeg/.bmp/.webp``) or a
    list of files, converted to PIL ``mode`` (``"RGB"`` or ``"L"``) and resized to ``size`` (bicubic) when given;
    without ``size`` all images must share one size."""
    from PIL import Image, UnidentifiedImageError

    if mode not in ("RGB", "L"):
        raise InvalidInputError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.exists():
            raise InvalidInputError(f"forget images: {str(root)!r} does not exist")
        files = sorted(f for f in root.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES) if root.is_dir() else [root]
        if not files:
            raise InvalidInputError(f"forget images: no {'/'.join(_IMAGE_SUFFIXES)} files in {str(root)!r}")
    elif isinstance(source, Sequence) and source:
        files = [Path(f) for f in source]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InvalidInputError(f"forget images: {len(missing)} file(s) do not exist, e.g. {missing[0]!r}")
    else:
        raise ErasusTypeError(f"forget images: pass a folder, an image file or a list of files, got {source!r:.80}")
    target = (size, size) if isinstance(size, int) else size
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if target is not None:
                    im = im.resize((target[1], target[0]), Image.BICUBIC)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise InvalidInputError(f"forget images: cannot read {str(f)!r} as an image ({e})") from None
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InvalidInputError(f"forget images have different sizes {sorted(shapes)[:3]}; pass size= to resize")
    return torch.from_numpy(np.stack(arrays))
