"""Errors a person can fix: one paragraph that names the key or file, exit code 2, no traceback."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from pipeline import config
from pipeline.errors import EXIT_CODE
from pipeline.stages import compose


def stage(*args: str, env: dict | None = None, module: str = "pipeline.stages.ingest") -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_TRACEBACK", "PIPELINE_TF_CHATTER")} | (env or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=environment)


@pytest.mark.parametrize(
    "override, named",
    [("train.epocs=3", "epocs"), ("train.epochs=ten", "epochs"), ("augment=bogus", "bogus"), ("backbone=resnet5", "resnet5")],
)
def test_a_config_mistake_is_one_paragraph_and_exit_2(override, named):
    done = stage(override)
    assert done.returncode == EXIT_CODE, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) <= 4


def test_a_stage_that_starts_tensorflow_prints_only_its_own_error():
    done = stage("train.epocs=3", module="pipeline.stages.train")
    assert done.returncode == EXIT_CODE and done.stderr.startswith("error: "), done.stderr
    assert len(done.stderr.strip().splitlines()) <= 4  # no oneDNN or absl start-up lines before it


def test_missing_data_names_the_folder_and_what_to_do(tmp_path):
    done = stage(f"paths.data={tmp_path / 'nowhere'}")
    assert done.returncode == EXIT_CODE and "Traceback" not in done.stderr
    assert str(tmp_path / "nowhere") in done.stderr and "dvc pull data.dvc" in done.stderr


def test_the_traceback_is_there_when_asked_for():
    done = stage("train.epocs=3", env={"PIPELINE_TRACEBACK": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_a_failed_override_under_dvc_exp_leaves_params_as_conf_composes_them(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    compose.run(str(params))
    good = params.read_text()
    bad = yaml.safe_load(good)
    bad["train"]["epochs"] = "abc"  # what `dvc exp run -S train.epochs=abc` writes
    params.write_text(yaml.safe_dump(bad))
    monkeypatch.setenv("DVC_EXP_NAME", "bad-override")
    with pytest.raises(config.ConfigError, match="epochs"):
        compose.run(str(params))
    assert params.read_text() == good
