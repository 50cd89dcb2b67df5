"""Usage: config = load_config("dcgan-mnist", ["optim.lr_g=1e-4"], {"training.epochs": 3})

One function owns the precedence defaults < preset YAML < --set overrides < dedicated
flags, and every value is checked against the dataclass field it lands in: unknown keys,
wrong types and impossible values raise ConfigError naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from gancli.engine.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a preset is a few hundred bytes; refuse anything absurd
INT_MAX = 2**63 - 1  # the largest whole number a config value may hold


def option(default: Any, help: str, **bounds: float) -> Any:
    """A config field with its one-line help and numeric bounds (ge, gt, le, lt)."""
    return field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = option(
        "mnist", "mnist, fashion-mnist, notmnist, digits (built in) or folder:PATH"
    )
    limit: int | None = option(
        None, "train on the first N images only (digits: generate N); null uses all", ge=1
    )
    image_size: int = option(28, "side in pixels the images are resized to", ge=8, le=512)
    channels: int = option(1, "1 for grey, 3 for RGB", ge=1, le=3)


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["mlp", "dcgan"] = option("dcgan", "network family for G and D")
    conditional: bool = option(False, "feed class labels to G and D (conditional GAN)")
    clusters: int = option(
        0,
        "self-conditioning: feed G and D the cluster of each image among k k-means clusters "
        "of the training images (no labels needed); samples draw clusters in their training "
        "shares. 0: off",
        ge=0,
        le=1000,
    )
    d_conditioning: Literal["input", "projection"] = option(
        "input",
        "how a conditional D sees the label: input (one-hot joined to the image) or "
        "projection (a class embedding dotted with D's last features; Miyato & Koyama 2018)",
    )
    z_dim: int = option(100, "length of the noise vector z", ge=1, le=4096)
    g_width: float = option(1.0, "width multiplier of the generator's layers", gt=0, le=16)
    d_width: float = option(1.0, "width multiplier of the discriminator's layers", gt=0, le=16)
    g_norm: Literal["batch", "class-batch", "none"] = option(
        "batch",
        "normalisation inside G; class-batch: batch norm with a scale and shift per class "
        "(conditional dcgan only; de Vries et al. 2017)",
    )
    d_norm: Literal["batch", "layer", "none"] = option("batch", "normalisation inside D")
    spectral_norm: bool = option(False, "spectral normalisation on D's weights")
    d_dropout: float = option(
        0.0, "dropout rate after each hidden layer of an mlp D (Goodfellow et al. 2014)", ge=0, lt=1
    )
    d_mbstd: bool = option(
        False,
        "minibatch standard deviation before D's last layer: D sees how much a group of "
        "samples varies (Karras et al. 2018), against mode collapse",
    )
    d_mbstd_group: int = option(
        4, "samples per group of the minibatch standard deviation", ge=2, le=256
    )
    init: Literal["dcgan", "default"] = option(
        "dcgan", "dcgan: weights N(0, 0.02); default: torch's"
    )


@dataclass(frozen=True)
class ObjectiveConfig:
    loss: Literal["minimax", "nonsaturating", "wgan-clip", "wgan-gp", "hinge", "rpgan"] = option(
        "nonsaturating", "adversarial objective"
    )
    n_critic: int = option(1, "D steps per G step", ge=1, le=100)
    clip: float = option(0.01, "weight clipping bound for wgan-clip", gt=0, le=10)
    gp_weight: float = option(10.0, "gradient penalty weight (lambda) for wgan-gp", ge=0, le=1e4)
    r1: float = option(
        0.0,
        "gamma of R1, (gamma / 2) E||grad D(x)||^2 on real images (Mescheder et al. 2018); 0: off",
        ge=0,
        le=1e4,
    )
    r2: float = option(
        0.0, "gamma of R2, the same penalty on generated images; 0: off", ge=0, le=1e4
    )
    reg_every: int = option(
        1,
        "D steps between R1/R2 penalties, their weight multiplied by as much (lazy "
        "regularisation, Karras et al. 2020)",
        ge=1,
        le=1000,
    )
    real_label: float = option(
        1.0, "target for real images in BCE losses (0.9: smoothing)", gt=0, le=1
    )


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adam", "rmsprop"] = option("adam", "optimiser for both networks")
    lr_g: float = option(2e-4, "generator learning rate", gt=0, le=1)
    lr_d: float = option(2e-4, "discriminator learning rate", gt=0, le=1)
    beta1: float = option(0.5, "Adam beta1", ge=0, lt=1)
    beta2: float = option(0.999, "Adam beta2", ge=0, lt=1)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = option(5, "passes over the training images", ge=1, le=100_000)
    batch_size: int = option(128, "real images per D step", ge=2, le=65_536)
    seed: int = option(0, "seed for weights, noise and batch order", ge=0, le=2**63 - 1)
    ema: float = option(0.0, "EMA decay of G's weights per G step; 0 turns EMA off", ge=0, lt=1)
    ema_rampup: float = option(
        0.0,
        "the EMA's half-life is at most this fraction of the images G has trained on "
        "(a ramp-up); 0: the decay alone",
        ge=0,
        le=1,
    )
    augment: str = option(
        "none",
        "DiffAugment of everything D sees, real and fake: none, or a comma-separated list "
        "of translation, cutout, color",
    )
    log_every: int = option(50, "G steps between lines in metrics.jsonl", ge=1, le=1_000_000)
    save_every: int = option(0, "epochs between kept checkpoints; 0 keeps only last.pt", ge=0)
    grid_size: int = option(64, "images in each epoch's grid (unconditional)", ge=1, le=1024)
    grid_scale: int = option(
        1, "each epoch grid and reals.png enlarged this many times, nearest neighbour", ge=1, le=16
    )
    eval_every: int = option(
        0, "epochs between FID and class-coverage checks in metrics.jsonl; 0: none", ge=0
    )
    eval_samples: int = option(5000, "samples per check during training", ge=50, le=100_000)
    tensorboard: bool = option(
        False, "also log to TensorBoard event files in RUN/tensorboard (the tensorboard extra)"
    )


@dataclass(frozen=True)
class Config:
    description: str = option("", "one line saying what this recipe is")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


#: Section name -> its dataclass, in Config's order.
SECTIONS: dict[str, type] = {k: v for k, v in get_type_hints(Config).items() if k != "description"}


# --------------------------------------------------------------------------- presets


def presets_dir() -> Path:
    """The folder holding the shipped presets (inside the wheel, or the repository's)."""
    packaged = resources.files("gancli") / "presets"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "presets"


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description; a file that cannot be read is listed with
    the reason, and hides none of the others."""
    out = {}
    for path in sorted(presets_dir().glob("*.yaml")):
        try:
            raw = _read_yaml(path)
        except ConfigError as exc:
            out[path.stem] = f"(cannot be used: {str(exc).removeprefix(f'{path}: ')})"
            continue
        out[path.stem] = str(raw.get("description", "")) if isinstance(raw, dict) else ""
    return out


def resolve_preset(preset: str) -> Path:
    """A preset name (dcgan-mnist) or a path to a YAML file -> the file's path."""
    candidate = Path(preset).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ConfigError(f"preset file not found: {candidate}")
        return candidate
    path = presets_dir() / f"{preset}.yaml"
    if not path.is_file():
        names = [p.stem for p in sorted(presets_dir().glob("*.yaml"))]
        raise ConfigError(
            f"unknown preset '{preset}';{_nearest(preset, names)} available presets: "
            + ", ".join(names)
        )
    return path


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a mapping naming one key twice: PyYAML would keep the
    last silently, so a preset could say two things and mean one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # an unhashable key: SafeLoader refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only


def _read_yaml(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size} bytes is too large for a config file")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        raise ConfigError(f"{path}: a number in it is far too long") from None


# --------------------------------------------------------------------------- loading


def load_config(
    preset: str | Path | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve defaults < preset < `--set` overrides < dedicated flags into a checked Config."""
    tree: dict[str, Any] = {}
    if preset is not None:
        path = resolve_preset(str(preset))
        raw = _read_yaml(path)
        if raw is None:
            raise ConfigError(f"{path}: the file is empty; a preset is a YAML mapping of sections")
        _merge_tree(tree, raw, source=str(path))
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    for key, value in (flags or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
    return config_from_dict(tree)


def parse_override(item: str) -> tuple[str, Any]:
    """'optim.lr_g=1e-4' -> ('optim.lr_g', 0.0001); the value is read as a YAML scalar."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. optim.lr_g=1e-4")
    try:
        value = _load_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        raise ConfigError(f"{_printable(key)}: the number is far too long") from None
    except RecursionError:
        raise ConfigError(f"--set {_printable(key)}: nested too deeply") from None
    if isinstance(value, (dict, list)):
        raise ConfigError(f"--set {key}: expected a single value, got {text!r}")
    return key, value


def _merge_tree(tree: dict[str, Any], raw: Any, source: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {_kind(raw)}")
    for section, body in raw.items():
        if section == "description":
            _set_dotted(tree, "description", body)
            continue
        if section not in SECTIONS:
            raise ConfigError(_unknown(str(section), ["description", *SECTIONS]))
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {_kind(body)}")
        for key, value in body.items():
            _set_dotted(tree, f"{section}.{key}", value)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if parts == ["description"]:
        tree["description"] = value
        return
    if len(parts) != 2:
        raise ConfigError(f"{_printable(key)}: expected section.key, e.g. training.epochs")
    section, name = parts
    if section not in SECTIONS:
        raise ConfigError(_unknown(section, ["description", *SECTIONS]))
    tree.setdefault(section, {})[name] = value  # the name is checked by config_from_dict


def config_from_dict(tree: Mapping[str, Any]) -> Config:
    """Build a Config from a nested mapping (a preset, or a checkpoint's saved config)."""
    if not isinstance(tree, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {_kind(tree)}")
    checked: dict[str, Any] = {}
    for key, value in tree.items():
        if key == "description":
            if not isinstance(value, str):
                raise ConfigError(f"description: expected text, got {_kind(value)}")
            checked["description"] = value.strip()
        elif key in SECTIONS:
            checked[key] = _build_section(key, SECTIONS[key], {} if value is None else value)
        else:
            raise ConfigError(_unknown(str(key), ["description", *SECTIONS]))
    config = Config(**checked)
    _check_combinations(config)
    return config


def _build_section(section: str, cls: type, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}: expected a mapping of keys, got {_kind(values)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{section}.{name}"
        if name not in fields:
            raise ConfigError(_unknown(key, [f"{section}.{n}" for n in fields]))
        kwargs[name] = _check_value(key, _coerce(key, value, hints[name]), fields[name].metadata)
    return cls(**kwargs)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}; got {value!r}")
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(key, value, inner[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a whole number, got {_shown(value)}")
        if abs(value) > INT_MAX:  # every count here fits 64 bits; PyTorch needs it to
            raise ConfigError(f"{key}: {_num(value)} is out of range")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {_shown(value)}")
        # YAML 1.1 reads 1e-4 (no dot) as text; accept it as the number it means.
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected text, got {_shown(value)}")
    raise AssertionError(f"unsupported config type {tp!r} for {key}")


def _check_value(key: str, value: Any, meta: Mapping[str, Any]) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if "ge" in meta and not value >= meta["ge"]:
        raise ConfigError(f"{key}: must be >= {_num(meta['ge'])}, got {_num(value)}")
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(f"{key}: must be > {_num(meta['gt'])}, got {_num(value)}")
    if "le" in meta and not value <= meta["le"]:
        raise ConfigError(f"{key}: must be <= {_num(meta['le'])}, got {_num(value)}")
    if "lt" in meta and not value < meta["lt"]:
        raise ConfigError(f"{key}: must be < {_num(meta['lt'])}, got {_num(value)}")
    return value


AUGMENTATIONS = ("translation", "cutout", "color")


def augment_policy(text: str) -> tuple[str, ...]:
    """'translation, cutout' -> ('translation', 'cutout'); 'none' or '' -> ()."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(
            f"training.augment: unknown augmentation {unknown[0]!r}; use none or a list of "
            f"{', '.join(AUGMENTATIONS)}"
        )
    return names


def _check_combinations(config: Config) -> None:
    augment_policy(config.training.augment)
    if config.training.ema_rampup and not config.training.ema:
        raise ConfigError("training.ema_rampup: needs an EMA to ramp up; set training.ema too")
    if config.data.channels == 2:
        raise ConfigError("data.channels: must be 1 (grey) or 3 (RGB), got 2")
    labelled = config.model.conditional or config.model.clusters
    if config.model.g_norm == "class-batch" and not (labelled and config.model.arch == "dcgan"):
        raise ConfigError(
            "model.g_norm: class-batch needs a conditional dcgan (model.conditional: true or "
            "model.clusters, model.arch: dcgan); use batch"
        )
    if config.model.conditional and config.model.clusters:
        raise ConfigError(
            "model.clusters: a conditional model is already given the classes; use one of "
            "model.conditional and model.clusters"
        )
    if config.model.clusters == 1:
        raise ConfigError("model.clusters: one cluster is no clustering; use 0 (off) or >= 2")
    if config.model.d_dropout and config.model.arch != "mlp":
        raise ConfigError("model.d_dropout: only the mlp discriminator has dropout; set it to 0")
    if config.objective.loss == "wgan-gp" and config.model.d_norm == "batch":
        raise ConfigError(
            "model.d_norm: batch norm mixes samples, which breaks the per-sample gradient "
            "penalty of wgan-gp; use layer or none"
        )


def _unknown(key: str, known: Iterable[str]) -> str:
    foreign = sorted({c for c in key if not c.isascii()})
    # A Cyrillic 'м' looks like 'm': say which characters make a key that looks known unknown.
    alike = f" (it holds {', '.join(f'{c!r} U+{ord(c):04X}' for c in foreign)})" if foreign else ""
    known = list(known)
    return f"{_printable(key)}: unknown key{alike};{_nearest(key, known)} known keys: " + ", ".join(
        known
    )


def _nearest(typed: str, known: list[str]) -> str:
    """' did you mean X?' for the known name closest to a mistyped one, or ''."""
    close = difflib.get_close_matches(typed, known, n=1, cutoff=0.6)
    return f" did you mean {close[0]}?" if close else ""


def _printable(key: str) -> str:
    """A key as typed, or quoted with escapes when it holds control characters."""
    return key if key.isprintable() else repr(key)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) else _kind(value)


def _num(value: float) -> str:
    """A number for a message; one of hundreds of digits is shortened."""
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if len(text) <= 24 else f"{text[:6]}...({len(text.lstrip('-'))} digits)"


# --------------------------------------------------------------------------- output


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
