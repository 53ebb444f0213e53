"""Where privacy noise comes from: OS entropy unless the caller asks for a seed."""

from __future__ import annotations

import os

import torch

from ..errors import InvalidInputError

__all__ = ["privacy_generator"]


def privacy_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for privacy noise: seeded by ``seed`` if given, else by 63 bits of ``os.urandom``.

    A fixed default seed would make the noise public (anyone can regenerate it and subtract it), so the
    ``(epsilon, delta)`` claims assume an unpredictable draw: two calls without ``seed`` draw different noise.
    torch's generator is not a cryptographic RNG; for that, use opacus' ``secure_mode`` (torchcsprng).
    """
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InvalidInputError(f"seed must be an int or None, got {seed!r}")
    value = seed if seed is not None else int.from_bytes(os.urandom(8), "big") >> 1
    return torch.Generator(device=device).manual_seed(value)
