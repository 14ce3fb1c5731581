"""avssl.config: dataclass defaults <- YAML <- --set, strict keys and types, dump/reload."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from avssl.config import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)


@dataclass
class Optim:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Data:
    root: str = "data"
    clip_frames: int = 8
    sizes: list[int] = field(default_factory=lambda: [112, 128])
    crops: tuple[int, ...] = (112,)
    backend: Literal["pyav", "decord", "opencv"] = "pyav"
    max_items: int | None = None
    manifest: Path | None = None


@dataclass
class Sched:
    warmup_epochs: int = 1


@dataclass
class Train:
    name: str = "run"
    epochs: int = 10
    seed: int | None = 0
    amp: bool = True
    optim: Optim = field(default_factory=Optim)
    data: Data = field(default_factory=Data)
    sched: Sched | None = None
    weights: dict[str, float] = field(default_factory=dict)


def write_yaml(tmp_path: Path, data: Any, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, "utf-8")
    return path


def get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_defaults_only() -> None:
    assert load_config(Train) == Train()


# (yaml mapping, overrides, expected {dotted key: value})
PRECEDENCE = [
    ({}, [], {"epochs": 10, "optim.lr": 0.1}),
    ({"epochs": 3}, [], {"epochs": 3}),
    ({"epochs": 3}, ["epochs=4"], {"epochs": 4}),
    ({"optim": {"lr": 0.5}}, ["optim.lr=1e-3"], {"optim.lr": 1e-3, "optim.momentum": 0.9}),
    ({}, ["epochs=2", "epochs=5"], {"epochs": 5}),  # later --set wins
    ({"optim": {"lr": 1}}, [], {"optim.lr": 1.0}),  # int accepted for float
    ({"optim": {"lr": "1e-3"}}, [], {"optim.lr": 1e-3}),  # YAML 1.1 string
    ("optim:\n  lr: 1e-3\n", [], {"optim.lr": 1e-3}),  # ... as PyYAML reads it from a file
    ({}, ["optim.lr=1e-3"], {"optim.lr": 1e-3}),
    ({}, ["optim.lr=2"], {"optim.lr": 2.0}),
    ({}, ["data.sizes=[1, 2, 3]"], {"data.sizes": [1, 2, 3]}),
    ({"data": {"sizes": [4]}}, [], {"data.sizes": [4]}),
    ({}, ["data.crops=[96,112]"], {"data.crops": (96, 112)}),
    ({"data": {"crops": []}}, [], {"data.crops": ()}),
    ({}, ["optim.betas=[0.5, 0.6]"], {"optim.betas": (0.5, 0.6)}),
    ({"optim": {"betas": [0, 1]}}, [], {"optim.betas": (0.0, 1.0)}),
    ({}, ["data.backend=decord"], {"data.backend": "decord"}),
    ({"data": {"backend": "opencv"}}, [], {"data.backend": "opencv"}),
    ({}, ["name=123"], {"name": "123"}),  # str fields keep the raw text
    ({}, ["name=yes"], {"name": "yes"}),
    ({}, ["name=a b: c"], {"name": "a b: c"}),
    ({}, ["name="], {"name": ""}),
    ({}, ["seed=null"], {"seed": None}),
    ({}, ["seed=None"], {"seed": None}),
    ({"seed": None}, [], {"seed": None}),
    ({"seed": None}, ["seed=7"], {"seed": 7}),
    ({}, ["data.max_items=100"], {"data.max_items": 100}),
    ({}, ["data.manifest=/x/m.jsonl"], {"data.manifest": Path("/x/m.jsonl")}),
    ({}, ["sched.warmup_epochs=3"], {"sched": Sched(3)}),  # None section built from defaults
    ({"sched": {}}, [], {"sched": Sched()}),
    ({"sched": {"warmup_epochs": 2}}, ["sched=null"], {"sched": None}),
    ({}, ["optim={lr: 0.2}"], {"optim": Optim(lr=0.2)}),
    ({"weights": {"a": 1}}, ["weights={b: 0.5}"], {"weights": {"b": 0.5}}),
]


@pytest.mark.parametrize(("data", "overrides", "expected"), PRECEDENCE)
def test_yaml_then_set(
    tmp_path: Path, data: Any, overrides: list[str], expected: dict[str, Any]
) -> None:
    cfg = load_config(Train, write_yaml(tmp_path, data), overrides)
    for key, value in expected.items():
        got = get(cfg, key)
        assert got == value and type(got) is type(value), (key, got, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True), ("True", True), ("TRUE", True), ("yes", True), ("Yes", True),
        ("1", True), ("on", True),
        ("false", False), ("False", False), ("no", False), ("NO", False), ("0", False),
        ("off", False),
    ],
)  # fmt: skip
def test_bool_from_set(text: str, expected: bool) -> None:
    cfg = load_config(Train, overrides=[f"amp={text}", f"optim.nesterov={text}"])
    assert cfg.amp is expected and cfg.optim.nesterov is expected


@pytest.mark.parametrize("text", ["2", "maybe", "null", "[true]", "1.0"])
def test_bool_from_set_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"--set: amp=.*expected bool"):
        load_config(Train, overrides=[f"amp={text}"])


@pytest.mark.parametrize("value", [1, 0, "true", "yes", None])
def test_bool_from_yaml_is_strict(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ValueError, match=r"cfg\.yaml: amp=.*expected bool"):
        load_config(Train, write_yaml(tmp_path, {"amp": value}))


# (yaml mapping or None, overrides, regex the error must match)
UNKNOWN = [
    ({"epoch": 3}, [], r"cfg\.yaml: unknown config key 'epoch' \(did you mean 'epochs'\?\)"),
    (
        {"optim": {"lrr": 0.1}},
        [],
        r"cfg\.yaml: unknown config key 'optim\.lrr' \(did you mean 'optim\.lr'\?\); "
        r"valid keys under 'optim': lr, momentum, nesterov, betas",
    ),
    (
        {"data": {"backnd": "pyav"}},
        [],
        r"unknown config key 'data\.backnd' \(did you mean 'data\.backend'\?\)",
    ),
    (
        {"zzz": 1},
        [],
        r"unknown config key 'zzz'; valid keys at the top level: name, epochs, seed, amp, optim",
    ),
    (
        {"sched": {"warmup": 1}},
        [],
        r"unknown config key 'sched\.warmup' \(did you mean 'sched\.warmup_epochs'\?\)",
    ),
    (
        None,
        ["epoch=3"],
        r"--set: unknown config key 'epoch' \(did you mean 'epochs'\?\); valid keys at the top",
    ),
    (
        None,
        ["optim.momentun=0.5"],
        r"--set: unknown config key 'optim\.momentun' \(did you mean 'optim\.momentum'\?\); "
        r"valid keys under 'optim'",
    ),
    (None, ["sched.warmup=1"], r"--set: unknown config key 'sched\.warmup'"),
    (None, ["optim={lrr: 1}"], r"--set: unknown config key 'optim\.lrr'"),
    (
        None,
        ["epochs.x=1"],
        r"--set: 'epochs' is a field of type int, not a section; cannot set 'epochs\.x'",
    ),
]


@pytest.mark.parametrize(("data", "overrides", "pattern"), UNKNOWN)
def test_unknown_keys(tmp_path: Path, data: Any, overrides: list[str], pattern: str) -> None:
    path = write_yaml(tmp_path, data) if data is not None else None
    with pytest.raises(ValueError, match=pattern):
        load_config(Train, path, overrides)


# (yaml mapping or None, overrides, regex naming key, value and expected type)
TYPE_ERRORS = [
    ({"epochs": "ten"}, [], r"cfg\.yaml: epochs='ten': expected int, got str"),
    ({"epochs": 2.5}, [], r"epochs=2\.5: expected int, got float"),
    ({"epochs": True}, [], r"epochs=True: expected int, got bool"),
    ({"epochs": None}, [], r"epochs=None: expected int"),
    ({"optim": {"lr": "fast"}}, [], r"optim\.lr='fast': expected float"),
    ({"optim": {"lr": True}}, [], r"optim\.lr=True: expected float"),
    ({"name": 3}, [], r"name=3: expected str, got int"),
    ({"seed": "x"}, [], r"seed='x': expected int \| None"),
    ({"data": {"sizes": 3}}, [], r"data\.sizes=3: expected list\[int\]"),
    ({"data": {"sizes": [1, "a"]}}, [], r"data\.sizes\[1\]='a': expected int"),
    ({"data": {"crops": "112"}}, [], r"data\.crops='112': expected tuple\[int, \.\.\.\]"),
    ({"optim": {"betas": [1]}}, [], r"optim\.betas=\[1\]: expected tuple\[float, float\].*len"),
    ({"data": {"backend": "pyAV"}}, [], r"data\.backend='pyAV': expected one of .*'pyav'\?"),
    ({"optim": 0.1}, [], r"optim=0\.1: expected Optim.*mapping"),
    ({"weights": {"a": "x"}}, [], r"weights\['a'\]='x': expected float"),
    ([1, 2], [], r"cfg\.yaml: the config must be a mapping"),
    (None, ["epochs=ten"], r"--set: epochs='ten': expected int"),
    (None, ["epochs=1.5"], r"--set: epochs=1\.5: expected int"),
    (None, ["optim.lr=fast"], r"--set: optim\.lr='fast': expected float"),
    (None, ["data.sizes=[1, x]"], r"--set: data\.sizes\[1\]='x': expected int"),
    (None, ["data.backend=ffmpeg"], r"--set: data\.backend='ffmpeg': expected one of"),
    (None, ["optim=0.1"], r"--set: optim=0\.1: expected Optim"),
    (None, ["epochs"], r"--set 'epochs': expected KEY=VALUE"),
    (None, ["optim..lr=1"], r"expected KEY=VALUE"),
    (None, ["=1"], r"expected KEY=VALUE"),
]


@pytest.mark.parametrize(("data", "overrides", "pattern"), TYPE_ERRORS)
def test_type_errors(tmp_path: Path, data: Any, overrides: list[str], pattern: str) -> None:
    path = write_yaml(tmp_path, data) if data is not None else None
    with pytest.raises(ValueError, match=pattern):
        load_config(Train, path, overrides)


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    assert load_config(Train, write_yaml(tmp_path, "")) == Train()
    assert load_config(Train, write_yaml(tmp_path, "# nothing differs\n")) == Train()


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        Train,
        write_yaml(tmp_path, {"optim": {"lr": "1e-4", "betas": [0.8, 0.9]}, "seed": None}),
        ["data.crops=[96]", "data.manifest=m.jsonl", "sched.warmup_epochs=2", "weights={a: 1}"],
    )
    out = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert out == tmp_path / "run" / "config.yaml"
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temp file left
    plain = yaml.safe_load(out.read_text("utf-8"))
    assert plain == config_to_dict(cfg)
    assert plain["data"]["crops"] == [96] and plain["data"]["manifest"] == "m.jsonl"
    assert load_config(Train, out) == cfg
    assert config_from_dict(Train, plain) == cfg


def test_config_to_dict_is_plain() -> None:
    d = config_to_dict(Train(data=Data(crops=(1, 2), manifest=Path("a"))))
    assert d["optim"] == {"lr": 0.1, "momentum": 0.9, "nesterov": False, "betas": [0.9, 0.999]}
    assert d["data"]["crops"] == [1, 2] and d["data"]["manifest"] == "a"
    assert d["sched"] is None
    assert yaml.safe_load(yaml.safe_dump(d)) == d  # only plain YAML types
    with pytest.raises(TypeError, match="dataclass instance"):
        config_to_dict(Train)


def test_config_from_dict_names_source() -> None:
    with pytest.raises(ValueError, match=re.escape("run/config.yaml: unknown config key 'x'")):
        config_from_dict(Train, {"x": 1}, source="run/config.yaml")


def test_apply_overrides_does_not_mutate() -> None:
    cfg = Train(data=Data(sizes=[1, 2]))
    before = copy.deepcopy(cfg)
    sizes = cfg.data.sizes
    new = apply_overrides(cfg, ["optim.lr=0.5", "data.sizes=[3]", "data.clip_frames=4"])
    assert cfg == before and cfg.data.sizes is sizes
    assert new.optim.lr == 0.5 and new.data.sizes == [3] and new.data.clip_frames == 4
    assert new.optim is not cfg.optim and new.data is not cfg.data
    assert apply_overrides(cfg, []) is cfg
    with pytest.raises(TypeError, match="sequence"):
        apply_overrides(cfg, "epochs=1")


def test_load_does_not_mutate_defaults(tmp_path: Path) -> None:
    load_config(Train, write_yaml(tmp_path, {"data": {"sizes": [9]}}), ["optim.lr=3"])
    assert Train() == Train(optim=Optim(lr=0.1), data=Data(sizes=[112, 128]))


def test_frozen_dataclasses_and_post_init() -> None:
    cfg = load_config(Frozen, overrides=["n=3"])
    assert cfg == Frozen(n=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        load_config(Frozen, overrides=["n=0"])


def test_not_a_dataclass() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        load_config(dict)
    with pytest.raises(TypeError, match="NoDefault: every config field needs a default"):
        load_config(NoDefault)


@dataclass(frozen=True)
class Frozen:
    n: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass
class NoDefault:
    n: int
