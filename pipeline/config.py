"""Typed configuration: conf/ (Hydra) or params.yaml + overrides -> a validated DictConfig.

conf/ is the one source of truth. params.yaml is conf/ composed, with the overrides of the last
`dvc exp run -S ...`; the `compose` stage rewrites it when conf/ changes under `dvc repro`.
DVC stages read params.yaml (`--params params.yaml`); a standalone run composes conf/ itself.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import UserError
from pipeline.store import CONF_DIR, MlflowConfig


@dataclass
class BackboneConfig:
    name: str
    application: str  # keras.applications class, e.g. VGG16
    module: str  # keras.applications module whose preprocess_input matches the weights
    input_size: int  # pixels per side fed to the backbone
    min_input_size: int  # the architecture rejects smaller inputs
    weights: str | None = "imagenet"  # imagenet, None (random), or a weights file path
    # Keras' own file name for the no-top ImageNet weights: looked up in paths.weights (DVC-tracked),
    # then in the Keras cache, before anything is downloaded.
    weights_file: str = ""
    # mixed_bfloat16 runs the backbone 2x (AVX512-BF16) to 7x (AMX) faster, and slower on CPUs with
    # neither; embeddings stay within ~1% of float32. Part of the model, so serving uses it too.
    precision: str = "float32"  # float32 | mixed_bfloat16


@dataclass
class HeadConfig:
    name: str
    pooling: str  # flatten | avg
    hidden_units: int
    dropout: float
    # keras: Adam, stopped early on validation loss; logistic: one L2-regularised logistic regression
    # (scikit-learn) per strength in c_grid, the one with the lowest validation log loss kept.
    fit: str = "keras"
    c_grid: list[float] = field(default_factory=list)  # inverse L2 strengths tried (fit: logistic)


@dataclass
class AugmentConfig:
    name: str
    views: int  # augmented copies per training image, each embedded once
    flip: str | None
    rotation: float
    zoom: float
    translation: float
    contrast: float


@dataclass
class DataConfig:
    classes: list[str]
    reject_class: str
    val_fraction: float  # of each folder, reject_class included
    test_fraction: float
    max_per_class: int | None
    max_pixels: int
    photo_resize: str  # matched | direct | both: how a photo sharper than the training images reaches the input size
    seed: int


@dataclass
class TrainConfig:
    epochs: int  # at most; each head stops once its validation loss has not improved for `patience` epochs
    patience: int
    batch_size: int
    learning_rate: float
    extract_batch_size: int
    fine_tune_layers: int
    fine_tune_epochs: int
    fine_tune_learning_rate: float
    seed: int
    seeds: int  # head fits over seed, seed+1, ...: their spread says how much of a score is the draw


@dataclass
class EmbedConfig:
    runtime: str  # openvino | keras: what runs the frozen backbone in the embed stage
    engine: str  # local | spark: where (pipeline/spark_embed.py)
    spark_master: str  # with engine=spark, the master the stage's Spark session connects to


@dataclass
class PathsConfig:
    data: str
    weights: str  # DVC-tracked pretrained weights, Keras' file names (weights.dvc)
    field: str  # real photos in class folders, scored by evaluate only: never trained, fitted or chosen on
    manifest: str
    ingest_report: str
    metrics: str  # git-tracked folder: <backbone>.json per backbone (see metrics_file)
    splits: str
    embeddings: str  # <backbone>/: the frozen backbone's feature maps of every split (the embed stage)
    models: str
    evaluation: str
    comparison: str
    champion: str
    audit: str  # label_issues.csv and label_issues.png: the images likeliest mislabelled
    audit_report: str  # the audit's counts: images, label issues, their share


@dataclass
class RegisterConfig:
    metric: str  # what the champion is chosen on (a validation metric)
    small_data_metric: str  # the same, cross-validated: what it is chosen on when the data is small
    greater_is_better: bool
    runtime: str  # "openvino" or "keras": what the served model runs (see conf/register/default.yaml)
    openvino_precisions: list[str]  # tried in order: "bf16", "f32"
    max_flip_rate: float  # share of validation answers OpenVINO may change from Keras'


@dataclass
class CrossValidationConfig:
    # At most this many train+val images (every folder): evaluate cross-validates the heads over
    # train+val, and the champion is chosen on that (pipeline/cross_validation.py).
    max_images: int
    folds: int
    repeats: int  # each a new stratified shuffle: more repeats, a steadier mean


@dataclass
class AuditConfig:
    backbone: str  # whose cached feature maps the audit reads: one of `compare`
    folds: int  # out-of-fold probabilities: each image scored by a fit that never saw it
    c: float  # the logistic regression's inverse L2 strength
    sheet: int  # images on the contact sheet


@dataclass
class Config:
    paths: PathsConfig
    data: DataConfig
    backbones: dict[str, BackboneConfig]
    head: HeadConfig
    neither_head: HeadConfig  # known vs reject class on the pooled embedding (the other_probability score)
    augment: AugmentConfig
    embed: EmbedConfig
    train: TrainConfig
    mlflow: MlflowConfig
    register: RegisterConfig
    cross_validation: CrossValidationConfig
    audit: AuditConfig
    compare: list[str] = field(default_factory=list)
    backbone: BackboneConfig | None = None  # set from `backbone=NAME`: the one this run works on


PRECISIONS = ("float32", "mixed_bfloat16")
PHOTO_RESIZES = ("matched", "direct", "both")  # ServingSettings.view_sizes


class ConfigError(UserError, ValueError):
    """The configuration is invalid; the message names the key."""


def validate(cfg: DictConfig, backbone: str | None = None) -> DictConfig:
    """Merge onto the schema so that an unknown key or a wrong type fails now, not an hour in;
    then set `backbone` to backbones[backbone] (default: the first compared one)."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    except Exception as err:  # omegaconf raises several types; all mean a bad config
        key = getattr(err, "full_key", None)
        raise ConfigError(f"invalid configuration{f' at {key}' if key else ''}: {str(err).splitlines()[0]}") from err
    backbone = backbone or (typed.compare[0] if typed.compare else None)
    for name in [*typed.compare, backbone]:
        if name not in typed.backbones:
            raise ConfigError(f"backbone {name!r} is not one of {sorted(typed.backbones)}")
    typed.backbone = typed.backbones[backbone]
    for name, spec in typed.backbones.items():
        if spec.input_size < spec.min_input_size:
            raise ConfigError(
                f"backbones.{name}.input_size={spec.input_size} is below {spec.min_input_size}, the smallest input {spec.application} accepts"
            )
        if spec.precision not in PRECISIONS:
            raise ConfigError(f"backbones.{name}.precision must be one of {PRECISIONS}, not {spec.precision!r}")
    if not typed.register.metric.startswith("val_"):
        raise ConfigError(f"register.metric must be a validation metric (val_*), not {typed.register.metric!r}")
    if typed.register.runtime not in ("openvino", "keras"):
        raise ConfigError(f"register.runtime must be openvino or keras, not {typed.register.runtime!r}")
    if unknown := set(typed.register.openvino_precisions) - {"bf16", "f32"}:
        raise ConfigError(f"register.openvino_precisions: {sorted(unknown)} unknown; use bf16 and/or f32")
    if not typed.register.small_data_metric.startswith("cv_"):
        raise ConfigError(f"register.small_data_metric must be a cross-validated metric (cv_*), not {typed.register.small_data_metric!r}")
    if typed.audit.backbone not in typed.compare:
        raise ConfigError(f"audit.backbone={typed.audit.backbone!r} is not compared (compare: {list(typed.compare)}): the audit reads its cached feature maps")
    if typed.audit.folds < 2:
        raise ConfigError(f"audit.folds must be at least 2, not {typed.audit.folds}")
    if typed.cross_validation.folds < 2 or typed.cross_validation.repeats < 1:
        raise ConfigError("cross_validation needs folds >= 2 and repeats >= 1")
    if typed.train.seeds < 1:
        raise ConfigError(f"train.seeds must be at least 1, not {typed.train.seeds}")
    if typed.embed.runtime not in ("openvino", "keras"):
        raise ConfigError(f"embed.runtime must be openvino or keras, not {typed.embed.runtime!r}")
    if typed.embed.engine not in ("local", "spark"):
        raise ConfigError(f"embed.engine must be local or spark, not {typed.embed.engine!r}")
    if typed.embed.engine == "spark" and typed.augment.views:
        # Each view is a seeded draw over the images in order; spread over executors it would not be.
        raise ConfigError(f"embed.engine=spark embeds no augmentation views yet: use augment=none, or embed.engine=local for augment={typed.augment.name}")
    if typed.data.photo_resize not in PHOTO_RESIZES:
        raise ConfigError(f"data.photo_resize must be one of {PHOTO_RESIZES}, not {typed.data.photo_resize!r}")
    for key in ("head", "neither_head"):
        spec = typed[key]
        if spec.pooling not in ("flatten", "avg"):
            raise ConfigError(f"{key}.pooling must be flatten or avg, not {spec.pooling!r}")
        if spec.fit not in ("keras", "logistic"):
            raise ConfigError(f"{key}.fit must be keras or logistic, not {spec.fit!r}")
        if spec.fit == "logistic" and (spec.hidden_units or spec.dropout or not spec.c_grid):
            raise ConfigError(f"{key}.fit=logistic is one linear layer: it needs hidden_units 0, dropout 0 and a c_grid")
    OmegaConf.set_readonly(typed, True)
    return typed


def pop_backbone(overrides: list[str]) -> tuple[str | None, list[str]]:
    """Split `backbone=NAME` (which picks backbones.NAME) from the other overrides."""
    picked = [o.partition("=")[2] for o in overrides if o.startswith("backbone=")]
    return (picked[-1] if picked else None), [o for o in overrides if not o.startswith("backbone=")]


def compose(overrides: list[str] = ()) -> DictConfig:
    """Compose conf/ with Hydra overrides (group choices like augment=heavy included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException

    backbone, overrides = pop_backbone(list(overrides))
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except MissingConfigException as err:  # an unknown group option, e.g. augment=bogus
        choices = f"; the choices are {', '.join(err.options)}" if err.options else ""
        raise ConfigError(f"{str(err).splitlines()[0]}{choices}") from err
    except HydraException as err:  # a malformed override
        raise ConfigError(str(err).splitlines()[0]) from err
    return validate(cfg, backbone)


def from_params(path: str | Path, overrides: list[str] = ()) -> DictConfig:
    """Read a composed params file (what DVC stages do) and apply key=value overrides."""
    backbone, overrides = pop_backbone(list(overrides))
    if not Path(path).is_file():
        raise ConfigError(f"no params file {path}: run `dvc repro` (or `python -m pipeline.stages.compose`) to compose it from conf/")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return validate(cfg, backbone)


def from_argv(argv: list[str] | None = None, description: str = "") -> DictConfig:
    """The command line every stage shares: [--params FILE] [key=value ...]."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--params",
        help="read this composed params file (as DVC stages do) instead of composing conf/",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. backbone=resnet50")
    args = parser.parse_args(argv)
    if args.params:
        return from_params(args.params, args.overrides)
    # By hand, not under DVC: everything under scratch/ (conf/paths/standalone.yaml), unless asked otherwise.
    by_hand = [] if any(o.startswith("paths=") for o in args.overrides) else ["paths=standalone"]
    return compose(by_hand + args.overrides)


def metrics_file(cfg: DictConfig, backbone: str) -> Path:
    """Where evaluate writes a backbone's metrics, and compare and register read them."""
    return Path(cfg.paths.metrics) / f"{backbone}.json"


def backbone_spec(cfg: DictConfig) -> BackboneConfig:
    """The spec of the backbone this run works on, as a plain dataclass."""
    return OmegaConf.to_object(cfg.backbone)
