"""Config composition: every backbone, head and augmentation composes; typos fail at start-up."""

import shutil

import pytest
import yaml
from conftest import ROOT

from pipeline import config
from pipeline.stages import compose

BACKBONES = ["mobilenet_v2", "vgg16", "resnet50", "inception_v3"]


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", ["flatten_dense", "gap_dropout"])
@pytest.mark.parametrize("augment", ["none", "light", "heavy"])
def test_every_combination_composes(backbone, head, augment):
    cfg = config.compose([f"backbone={backbone}", f"head={head}", f"augment={augment}"])
    assert cfg.backbone.name == backbone
    assert cfg.head.name == head and cfg.augment.name == augment
    assert cfg.backbone.weights == "imagenet"  # the real default; offline is a preset


def test_input_sizes_are_the_backbones_own():
    cfg = config.compose()
    assert {name: spec.input_size for name, spec in cfg.backbones.items()} == {
        "mobilenet_v2": 224,
        "vgg16": 224,
        "resnet50": 224,
        "inception_v3": 299,
    }
    assert list(cfg.compare) == BACKBONES


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epochs=ten"], "epochs"),
        (["backbone=resnet5"], "resnet5"),
        (["head.pooling=max"], "pooling"),
        (["backbones.vgg16.precision=bf16"], "precision"),
        (["register.metric=test_accuracy"], "validation metric"),
        (["preset=offline", "backbones.inception_v3.input_size=32"], "below 75"),
        (["embed.engine=dask"], "embed.engine must be local or spark"),
        (["embed.runtime=onnx"], "embed.runtime must be openvino or keras"),
        (["embed.engine=spark", "augment=heavy"], "no augmentation views yet"),
        (["compare=[vgg16]"], "audit.backbone='mobilenet_v2' is not compared"),
    ],
)
def test_bad_values_fail_at_start_up(overrides, message):
    with pytest.raises(config.ConfigError, match=message):
        config.compose(overrides)


def test_unknown_key_fails_at_start_up():
    with pytest.raises(Exception, match="epocs"):
        config.compose(["train.epocs=3"])


def test_offline_preset_keeps_real_mobilenet_weights_and_random_init_elsewhere():
    cfg = config.compose(["preset=offline"])
    mobilenet = cfg.backbones.mobilenet_v2
    assert mobilenet.weights == "imagenet" and mobilenet.input_size == 224  # found in weights/, not downloaded
    assert all(spec.weights is None for name, spec in cfg.backbones.items() if name != "mobilenet_v2")
    assert cfg.data.max_per_class is None  # all the team data


def test_params_file_is_conf_composed_and_reads_back(tmp_path):
    params = tmp_path / "params.yaml"
    compose.run(str(params))
    assert "backbone" not in yaml.safe_load(params.read_text())  # picked per stage, not stored
    from_file = config.from_params(params, ["backbone=resnet50", "train.epochs=3"])
    composed = config.compose(["backbone=resnet50", "train.epochs=3"])
    assert from_file == composed


def test_a_stage_run_by_hand_writes_under_scratch_never_dvcs_outputs():
    by_hand, under_dvc = config.from_argv([]), config.from_argv(["--params", str(ROOT / "params.yaml")])
    for key in ("manifest", "splits", "embeddings", "models", "evaluation", "metrics", "comparison", "champion", "audit", "audit_report"):
        assert by_hand.paths[key].startswith("scratch/") and not under_dvc.paths[key].startswith("scratch/"), key
    assert by_hand.paths.data == under_dvc.paths.data  # the same team data in


def test_a_machine_local_preset_is_the_default_that_overrides_still_change(tmp_path):
    """conf/local/machine.yaml, composed as `dvc repro` (compose stage) and `dvc exp run -S` both do."""
    from dvc.utils.hydra import compose_and_dump

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    (conf / "local/machine.yaml").write_text("# @package _global_\ndefaults:\n  - override /preset: offline\n")
    params = tmp_path / "params.yaml"
    for overrides, augment in (([], "none"), (["augment=heavy"], "heavy")):
        compose_and_dump(str(params), str(conf), None, "config", ".", overrides)
        composed = yaml.safe_load(params.read_text())
        assert composed["backbones"]["vgg16"]["weights"] is None and composed["augment"]["name"] == augment
    compose_and_dump(str(params), str(conf), None, "config", ".", ["~local"])  # skipped for one run
    assert yaml.safe_load(params.read_text())["backbones"]["vgg16"]["weights"] == "imagenet"
