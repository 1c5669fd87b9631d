"""The typed-config engine: dataclasses declared with ``arg``, built from dicts with every value checked, read
from YAML, with ``section.key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gen_emotion.config.fields import ConfigError, apply_override, arg, build, read_yaml
from gen_emotion.core.errors import GenEmotionError


@dataclass
class Section:
    rate: float = arg(0.1, "a rate", above=0, high=1)
    count: int = arg(3, "a count", low=1)
    mode: str = arg("fast", "a mode", choices=("fast", "slow"))
    names: list[str] = arg(help="some names", factory=lambda: ["a"])
    limit: int | None = arg(None, "a limit or none", low=1)
    modes: list[str] = arg(help="modes, each one of the choices", factory=lambda: ["fast"], choices=("fast", "slow"))


@dataclass
class Settings:
    title: str = arg("x", "a title")
    section: Section = arg(factory=Section)


def test_build_coerces_yaml_values_to_the_declared_types():
    settings = build(Settings, {"section": {"rate": "5e-5", "count": 2, "names": "b", "limit": None}}, "f.yaml")
    assert settings.section == Section(rate=5e-5, count=2, names=["b"], limit=None)
    assert isinstance(build(Settings, {"section": {"rate": 1}}, "f.yaml").section.rate, float)
    assert build(Settings, {"section": None}, "f.yaml") == Settings()  # an empty section: its defaults


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"section": {"count": 1.5}}, "f.yaml: section.count must be int, got 1.5"),
        ({"section": {"count": True}}, "f.yaml: section.count must be int, got True"),
        ({"section": {"count": 0}}, "f.yaml: section.count must be at least 1, got 0"),
        ({"section": {"rate": 0}}, "f.yaml: section.rate must be above 0, got 0.0"),
        ({"section": {"rate": 2}}, "f.yaml: section.rate must be at most 1, got 2.0"),
        ({"section": {"rate": "nan"}}, "f.yaml: section.rate must be float, got 'nan'"),
        ({"section": {"mode": "medium"}}, "f.yaml: section.mode must be one of fast, slow, got 'medium'"),
        ({"section": {"names": []}}, "f.yaml: section.names must be a non-empty list, got []"),
        ({"section": {"modes": ["slow", "medium"]}}, "f.yaml: section.modes must be one of fast, slow, got 'medium'"),
        ({"section": {"limit": 0}}, "f.yaml: section.limit must be at least 1, got 0"),
        ({"section": {"cont": 2}}, "f.yaml: unknown key 'section.cont'; did you mean section.count?"),
        ({"zzz": 2}, "f.yaml: unknown key 'zzz'; known keys: title, section"),
        ({"section": 5}, "f.yaml: section must be a mapping, got 5"),
    ],
)
def test_build_refuses_a_bad_value_in_one_line(values, message):
    with pytest.raises(ConfigError) as err:
        build(Settings, values, "f.yaml")
    assert str(err.value) == message


def test_build_names_the_whole_as_asked():
    with pytest.raises(ConfigError, match="^f.yaml: the settings must be a mapping, got 'x'$"):
        build(Settings, "x", "f.yaml", whole="the settings")
    assert issubclass(ConfigError, GenEmotionError)


def test_apply_override_on_a_dict():
    values: dict = {"train": {"epochs": 1}}
    apply_override(values, "train.max_steps=20")
    apply_override(values, "lora.r=8")
    assert values == {"train": {"epochs": 1, "max_steps": 20}, "lora": {"r": 8}}
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_override(values, "train.max_steps")
    with pytest.raises(ConfigError, match="not a section"):
        apply_override(values, "train.epochs.x=1")


def test_read_yaml_names_the_line_of_a_problem(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb:\n  c: 2\n  c: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 4: key 'c' is given twice \(first on line 3\)"):
        read_yaml(path)
    path.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(ConfigError, match="line 2: not UTF-8"):
        read_yaml(path)
    path.write_text("a: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(path)
    path.write_text("\ufeffa: 1\n", encoding="utf-8")  # a byte-order mark is no part of the first key
    assert read_yaml(path) == {"a": 1}
    with pytest.raises(ConfigError, match="cannot read"):
        read_yaml(tmp_path / "missing.yaml")
