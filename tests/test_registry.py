import pytest

import erasus
from erasus.registry import Registry


def test_register_get_and_list():
    reg = Registry("widget")

    @reg.register("square")
    class Square:
        """Squares a number."""

        def __init__(self, *, scale: int = 1):
            self.scale = scale

    obj = reg.get("square", scale=3)
    assert isinstance(obj, Square) and obj.scale == 3
    assert reg.names() == ["square"]
    assert "square" in reg
    assert Square.registry_name == "square"


def test_duplicate_names_are_refused():
    reg = Registry("widget")
    reg.register("a")(type("A", (), {}))
    with pytest.raises(erasus.RegistryError, match="already registered"):
        reg.register("a")(type("B", (), {}))


def test_unknown_name_lists_known_ones():
    reg = Registry("widget")
    reg.register("alpha")(type("A", (), {}))
    with pytest.raises(erasus.RegistryError, match="unknown widget 'beta'; known widgets: alpha"):
        reg.get("beta")
    with pytest.raises(KeyError):  # RegistryError is a KeyError for callers catching builtins
        reg.get("beta")


def test_bad_registry_names():
    reg = Registry("widget")
    with pytest.raises(erasus.RegistryError):
        reg.register("")


def test_public_registries_are_populated_lazily():
    assert "kcenter" in erasus.list_selectors()
    with pytest.raises(erasus.RegistryError, match="unknown selector"):
        erasus.get_selector("no-such-selector")
