"""Config precedence and every way a config can be wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gancli.engine.config import (
    SECTIONS,
    Config,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_config,
    parse_override,
    presets_dir,
    resolve_preset,
)
from gancli.engine.errors import ConfigError

PRESETS = [
    "gan-mnist", "dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist", "modern-mnist",
]  # fmt: skip


def write(tmp_path: Path, text: str | bytes, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_defaults_without_preset() -> None:
    assert load_config() == Config()


def test_precedence_defaults_preset_set_flags(tmp_path: Path) -> None:
    preset = write(tmp_path, "training:\n  epochs: 7\n  batch_size: 32\noptim:\n  lr_g: 1e-3\n")
    cfg = load_config(preset)
    assert (cfg.training.epochs, cfg.training.batch_size, cfg.optim.lr_g) == (7, 32, 1e-3)
    assert cfg.training.seed == Config().training.seed  # untouched key keeps its default
    cfg = load_config(preset, ["training.epochs=9", "training.seed=3"])
    assert (cfg.training.epochs, cfg.training.seed, cfg.training.batch_size) == (9, 3, 32)
    cfg = load_config(preset, ["training.epochs=9"], {"training.epochs": 11, "data.limit": None})
    assert cfg.training.epochs == 11
    assert cfg.data.limit is None  # a flag left at None does not override


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_shipped_presets_load_and_describe_themselves(name: str) -> None:
    cfg = load_config(name)
    assert cfg.description
    text = (presets_dir() / f"{name}.yaml").read_text()
    assert text.startswith(f"# {name}:"), "each preset opens with a comment naming it"


def test_preset_recipes_keep_their_papers_and_say_what_was_tuned() -> None:
    wgan = load_config("wgan-mnist")
    assert (wgan.objective.loss, wgan.objective.clip, wgan.optim.name) == (
        "wgan-clip",
        0.01,
        "rmsprop",
    )
    gp = load_config("wgan-gp-mnist")
    assert (gp.objective.gp_weight, gp.objective.n_critic, gp.model.d_norm) == (10.0, 5, "layer")
    assert gp.optim.beta2 == 0.9
    cgan = load_config("cgan-mnist")
    assert cgan.model.conditional and cgan.model.d_conditioning == "projection"
    assert load_config("gan-mnist").model.arch == "mlp"
    for name in ("gan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist"):
        # a preset that departs from its paper says so, with the measurement, in its comment
        assert "Tuned for 5-epoch runs" in resolve_preset(name).read_text()


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_the_plain_recipes_in_preset_comments_load(name: str) -> None:
    """Every `--set` line a preset's comment offers (the seed's or the paper's plain
    recipe) names real keys and values: copied after the preset, it loads."""
    text = resolve_preset(name).read_text()
    for line in text.splitlines():
        if line.startswith("#") and "--set " in line:
            flags = line.split("--set ")[1:]
            load_config(name, [flag.strip() for flag in flags])


@pytest.mark.parametrize("name", ["gan-mnist", "wgan-mnist", "dcgan-mnist"])
def test_classic_presets_condition_on_clusters_and_offer_the_plain_recipe(name: str) -> None:
    cfg = load_config(name)
    assert cfg.model.clusters == 200 and cfg.training.ema == 0.999
    comment = resolve_preset(name).read_text()
    assert "--set model.clusters=0" in comment and "--set training.ema=0" in comment


@pytest.mark.parametrize("dataset", ["mnist", "fashion", "notmnist", "digits"])
def test_modern_presets_condition_on_clusters_and_sample_the_ema(dataset: str) -> None:
    cfg = load_config(f"modern-{dataset}")
    assert not cfg.model.conditional and cfg.model.clusters == 200
    assert cfg.model.d_conditioning == "projection" and cfg.objective.loss == "hinge"
    assert (cfg.training.ema, cfg.training.ema_rampup) == (0.999, 0.05)


def test_list_presets_has_descriptions() -> None:
    presets = list_presets()
    assert set(PRESETS) <= set(presets)
    assert all(presets[name] for name in PRESETS)


def test_yaml_exponent_without_dot_is_a_number() -> None:
    assert parse_override("optim.lr_g=1e-4") == ("optim.lr_g", "1e-4")
    assert load_config(None, ["optim.lr_g=1e-4"]).optim.lr_g == pytest.approx(1e-4)


def test_roundtrip_through_dict() -> None:
    cfg = load_config("cgan-mnist", ["training.ema=0.999"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg


def test_every_field_has_help() -> None:
    helps = {
        f"{section}.{f.name}": f.metadata.get("help", "")
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    }
    assert "training.epochs" in helps
    assert all(text.strip() for text in helps.values()), helps


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.epochs=0", "training.epochs: must be >= 1"),
        ("training.epochs=-3", "training.epochs: must be >= 1"),
        ("training.epochs=2.5", "training.epochs: expected a whole number"),
        ("training.epochs=five", "training.epochs: expected a whole number"),
        ("training.epochs=true", "training.epochs: expected a whole number"),
        ("optim.lr_g=0", "optim.lr_g: must be > 0"),
        ("optim.lr_g=-1e-4", "optim.lr_g: must be > 0"),
        ("optim.lr_g=.nan", "optim.lr_g: must be a finite number"),
        ("optim.lr_g=nan", "optim.lr_g: must be a finite number"),
        ("optim.lr_g=inf", "optim.lr_g: must be a finite number"),
        ("optim.lr_g=fast", "optim.lr_g: expected a number"),
        ("optim.beta1=1", "optim.beta1: must be < 1"),
        ("optim.name=sgd", "optim.name: must be one of adam, rmsprop"),
        ("model.arch=resnet", "model.arch: must be one of mlp, dcgan"),
        ("model.conditional=maybe", "model.conditional: expected true or false"),
        ("model.z_dim=100000", "model.z_dim: must be <= 4096"),
        ("objective.loss=lsgan", "objective.loss: must be one of"),
        ("objective.n_critic=0", "objective.n_critic: must be >= 1"),
        ("training.batch_size=1", "training.batch_size: must be >= 2"),
        ("training.epochs=99999999999", "training.epochs: must be <= 100000"),
        ("training.bogus=1", "training.bogus: unknown key"),
        ("trainin.epochs=1", "trainin: unknown key"),
        ("epochs=1", "epochs: expected section.key"),
        ("a.b.c=1", "a.b.c: expected section.key"),
        ("training.epochs", "expected section.key=value"),
        ("=3", "expected section.key=value"),
        ("training.epochs=[1, 2]", "expected a single value"),
        ("data.limit=0", "data.limit: must be >= 1"),
        ("training.grid_scale=0", "training.grid_scale: must be >= 1"),
        ("training.grid_scale=17", "training.grid_scale: must be <= 16"),
        ("training.grid_scale=1.5", "training.grid_scale: expected a whole number"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- 1\n- 2\n", "expected a mapping of sections, got a list"),
        ("just text", "expected a mapping of sections, got text"),
        ("training: [1, 2]\n", "training: expected a mapping of keys, got a list"),
        (
            "training:\n  epochs: {a: 1}\n",
            "training.epochs: expected a whole number, got a mapping",
        ),
        ("model:\n  arch: [mlp]\n", "model.arch: must be one of"),
        ("optimizer:\n  lr: 1\n", "optimizer: unknown key"),
        ("training:\n  epochs: 1\n   bad: indent\n", "invalid YAML at line"),
        ("training: {epochs: 1\n", "invalid YAML"),
        ("description: [1]\n", "description: expected text"),
        ("objective:\n  loss: wgan-gp\nmodel:\n  d_norm: batch\n", "model.d_norm: batch norm"),
        ("model:\n  d_dropout: 0.3\n", "model.d_dropout: only the mlp discriminator"),
        ("model:\n  g_norm: class-batch\n", "model.g_norm: class-batch needs a conditional"),
        ("model:\n  d_conditioning: both\n", "model.d_conditioning: must be one of"),
        ("!!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    ],
)
def test_bad_preset_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(write(tmp_path, b"training:\n  epochs: \xff\xfe\n"))


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("training:\n  epochs: *i")
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "\n".join(lines) + "\n"))


def test_unknown_preset_lists_available() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown preset 'dcgan-mnsit'; did you mean dcgan-mnist\? available presets: .*wgan",
    ):
        load_config("dcgan-mnsit")


def test_missing_preset_file() -> None:
    with pytest.raises(ConfigError, match="preset file not found"):
        load_config("nowhere/p.yaml")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(["data", "model", "objective", "optim", "training", "description", "other"])
fields = st.sampled_from(
    ["epochs", "batch_size", "lr_g", "arch", "loss", "limit", "conditional", "ema", "z_dim", "x"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        keys, st.one_of(values, st.dictionaries(fields, values, max_size=4)), max_size=4
    )
)
def test_any_mapping_gives_a_config_or_one_config_error(tree: dict) -> None:
    try:
        cfg = config_from_dict(tree)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_override_text_gives_a_config_or_one_config_error(text: str) -> None:
    try:
        load_config(None, [text])
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


def test_grid_scale_defaults_to_today_s_grids() -> None:
    assert load_config(None).training.grid_scale == 1
    assert load_config(None, ["training.grid_scale=4"]).training.grid_scale == 4
