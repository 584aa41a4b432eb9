"""A fresh clone of this checkout with ../shared beside it, and the commands run in it: dvc, git, the project's MLflow store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.store import mlflow_config

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
BIN = Path(sys.executable).parent
MODEL = mlflow_config().registered_model
TINY_PRESET = """\
# @package _global_
defaults:
  - offline
data:
  max_per_class: 60
train:
  epochs: 20
  extract_batch_size: 16
cross_validation:
  max_images: 0   # small data's cross-validation has its own test (test_own_photos_e2e.py)
"""


def sh(*args: str, cwd: Path, timeout: int = 600, stdout_only: bool = False, tracking_uri: str | None = None) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own embedded store, unless a tracking server is given
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout if stdout_only else done.stdout + done.stderr


def client_for(project: Path) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return MlflowClient()


def clone(project: Path, prepare=lambda project: None) -> Path:
    """A git repository of this checkout's tracked files, as a fresh clone has them, with ../shared
    beside it (paths.field) and the team's DVC remote; prepare(project) runs before the first commit."""
    (project.parent / "shared").symlink_to(SHARED)
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    prepare(project)
    sh("git", "init", "-q", cwd=project)
    sh("git", "add", "-A", cwd=project)
    commit(project, "copy")
    sh("dvc", "remote", "modify", "--local", "storage", "url", str(SHARED / "dvc-storage"), cwd=project)
    return project


def commit(project: Path, message: str) -> None:
    sh("git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", message, cwd=project)


def queue_status_when_done(project: Path) -> str:
    """`dvc queue status` once nothing is Queued or Running (bounded: at most 600 polls and 20 minutes)."""
    deadline = time.monotonic() + 1200
    for _ in range(600):
        status = sh("dvc", "queue", "status", cwd=project)
        if not re.search(r"\b(Queued|Running)\b", status) or time.monotonic() > deadline:
            break
        time.sleep(2)
    return status


def with_tiny_preset(project: Path, extra: str = "") -> None:
    (project / "conf/preset/tiny.yaml").write_text(TINY_PRESET + extra)
    (project / "conf/local").mkdir()  # the machine-local default preset: not committed, honoured by every entry point
    (project / "conf/local/machine.yaml").write_text("# @package _global_\ndefaults:\n  - override /preset: tiny\n")
