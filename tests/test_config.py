import dataclasses
from typing import Literal, Optional

import pytest

import erasus
from erasus.config import Config, SelectionConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyConfig(Config):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    steps: int = 10
    tag: Optional[str] = None
    selection: SelectionConfig = dataclasses.field(default_factory=SelectionConfig)


def test_yaml_round_trip(tmp_path):
    cfg = ToyConfig(optimizer="adam", lr=3e-4, steps=5, tag="x",
                    selection=SelectionConfig(method="herding", prune_ratio=0.2, options={"metric": "cosine"}))
    path = tmp_path / "cfg.yaml"
    cfg.to_yaml(path)
    assert ToyConfig.from_yaml(path) == cfg
    assert ToyConfig.from_yaml(cfg.to_yaml()) == cfg
    assert ToyConfig.from_dict(cfg.to_dict()) == cfg


def test_configs_are_frozen_and_keyword_only():
    cfg = ToyConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        ToyConfig("adam")  # type: ignore[misc]


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(erasus.ConfigError, match=r"unknown key\(s\) \['lrr'\].*allowed keys: \['lr', 'optimizer'"):
        ToyConfig.from_dict({"lrr": 0.1})


def test_literal_values_are_checked():
    with pytest.raises(erasus.ConfigError, match=r"optimizer = 'rmsprop' is not allowed; expected one of \['sgd', 'adam'\]"):
        ToyConfig.from_dict({"optimizer": "rmsprop"})


def test_types_are_checked():
    with pytest.raises(erasus.ConfigError, match="steps must be an integer"):
        ToyConfig.from_dict({"steps": "ten"})
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        ToyConfig.from_dict({"lr": "fast"})
    assert ToyConfig.from_dict({"lr": 1}).lr == 1.0


def test_selection_config_validates_ratio():
    with pytest.raises(erasus.ConfigError, match="prune_ratio"):
        SelectionConfig(prune_ratio=0.0)
    assert SelectionConfig().replace(prune_ratio=0.5).prune_ratio == 0.5
