"""Team mode, for real: PostgreSQL (pg_virtualenv) -> `mlflow server` with proxied artifacts -> the tiny
pipeline, queued experiments on two workers and `mlflow models serve` all against it, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.project import SHARED, clone, commit, queue_status_when_done, sh, with_tiny_preset
from helpers.serving import MODEL_NAME, PHOTOS, post, split
from mlflow.tracking import MlflowClient

from serve.process import free_port, launch, stop, wait_until_up

pytestmark = [
    pytest.mark.slow,  # PostgreSQL, a tracking server and the pipeline: minutes
    pytest.mark.skipif(shutil.which("pg_virtualenv") is None, reason="needs Debian's postgresql-common (.ci/run installs it)"),
    pytest.mark.skipif(not (SHARED / "dvc-storage").is_dir(), reason="needs ../shared/dvc-storage"),
]
BACKBONES = ["mobilenet_v2", "vgg16"]  # two are a comparison; the other two add minutes, not coverage
EXPERIMENTS = {"team-lr": "train.learning_rate=0.002", "team-head": "head=gap_dropout"}  # no backbone reruns


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> dict[str, str]:
    """A throw-away PostgreSQL cluster (Debian's pg_virtualenv, which also runs as root) -> its PG* settings.

    pg_virtualenv runs a command inside the cluster's life and drops the cluster when it ends: the
    command writes the settings out and waits for its stdin to close.
    """
    settings = tmp_path_factory.mktemp("postgres") / "settings"
    cluster = subprocess.Popen(
        ["pg_virtualenv", "-t", "sh", "-c", f"env > {settings}.part && mv {settings}.part {settings} && read _ || true"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for _ in range(600):  # bounded: at most 60 s
            if settings.exists() or cluster.poll() is not None:
                break
            time.sleep(0.1)
        assert settings.exists(), f"pg_virtualenv did not start a cluster:\n{cluster.stdout.read() if cluster.poll() is not None else ''}"
        yield dict(line.split("=", 1) for line in settings.read_text().splitlines() if line.startswith("PG"))
    finally:
        cluster.stdin.close()  # the command ends, pg_virtualenv stops and drops the cluster
        cluster.wait(timeout=60)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory) -> dict:
    """`mlflow server` on PostgreSQL with proxied artifact storage (README, team set-up) -> its URL and folders."""
    folder = tmp_path_factory.mktemp("tracking_server")
    database = f"postgresql://{postgres['PGUSER']}:{postgres['PGPASSWORD']}@127.0.0.1:{postgres['PGPORT']}/{postgres['PGDATABASE']}"
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", database,
               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    process = launch(command, {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}, folder / "server.log")
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/health", folder / "server.log")
        yield {"url": f"http://127.0.0.1:{port}", "artifacts": folder / "artifacts", "postgres": postgres}
    finally:
        stop(process)


@pytest.fixture(scope="module")
def project(server, tmp_path_factory) -> Path:
    """A clone with the team data pulled and the tiny preset on two backbones as this machine's default."""
    project = clone(tmp_path_factory.mktemp("team") / "project", lambda p: with_tiny_preset(p, f"compare: {json.dumps(BACKBONES)}\n"))
    sh("dvc", "pull", "-q", "data.dvc", "weights.dvc", cwd=project)
    return project


@pytest.fixture(scope="module")
def client(server) -> MlflowClient:
    return MlflowClient(server["url"])  # not mlflow.set_tracking_uri: that would outlive this module


def test_the_pipeline_logs_and_registers_on_the_team_server(server, project, client):
    """`dvc repro` with only MLFLOW_TRACKING_URI set: runs, metrics and the champion land on the server,
    whose runs live in PostgreSQL and whose artifacts the server stores itself (proxied)."""
    sh("dvc", "repro", cwd=project, timeout=1200, tracking_uri=server["url"])
    experiment = client.get_experiment_by_name("airplane-automobile")
    runs = client.search_runs([experiment.experiment_id], "tags.run_by = 'dvc'")
    assert {r.data.tags.get("backbone") for r in runs} >= set(BACKBONES)
    assert all(r.info.status == "FINISHED" for r in runs)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.tags["backbone"] in BACKBONES
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()  # nothing went to a local store
    assert list(server["artifacts"].rglob("MLmodel")), "the model's files are in the server's artifact destination"
    pg = server["postgres"]
    counted = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", pg["PGPORT"], "-U", pg["PGUSER"], "-d", pg["PGDATABASE"], "-tAc", "SELECT count(*) FROM runs"],
        env={**os.environ, "PGPASSWORD": pg["PGPASSWORD"]}, capture_output=True, text=True, check=True,
    )
    assert int(counted.stdout) == len(client.search_runs([experiment.experiment_id], max_results=1000))


def test_the_champion_is_served_from_the_team_server(server, client, tmp_path):
    """`mlflow models serve -m models:/...@champion` with MLFLOW_TRACKING_URI: the model comes through the server."""
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": server["url"], "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    process = launch(command, env, log)
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/ping", log)
        photos = [next((PHOTOS / folder).glob("*.jpg")) for folder in ("airplane", "automobile", "other")]
        status, body = post(f"http://127.0.0.1:{port}/invocations", split(*(p.read_bytes() for p in photos)))
    finally:
        stop(process)
    assert status == 200, body
    answers = json.loads(body)["predictions"]
    assert [a["model_version"] for a in answers] == [champion.version] * len(photos)
    assert all(a["answer"] in {"airplane", "automobile", "neither"} for a in answers)


def test_queued_experiments_on_two_workers_land_on_the_team_server(server, project, client):
    """Two queued experiments run at once by two `dvc queue` workers, both writing to the one server."""
    sh("git", "add", "-A", cwd=project)
    commit(project, "after the first run")
    for name, override in EXPERIMENTS.items():
        sh("dvc", "exp", "run", "--queue", "-n", name, "-S", override, cwd=project)
    sh("dvc", "queue", "start", "-j", "2", cwd=project, tracking_uri=server["url"])  # workers keep this environment
    status = queue_status_when_done(project)
    assert not re.search(r"\b(Queued|Running|Failed)\b", status), status

    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=project, stdout_only=True))
    names = {rev["name"] for baseline in shown for experiment in baseline.get("experiments") or [] for rev in experiment.get("revs", [])}
    assert set(EXPERIMENTS) <= names
    experiment = client.get_experiment_by_name("airplane-automobile")
    for name in EXPERIMENTS:
        runs = client.search_runs([experiment.experiment_id], f"tags.dvc_exp = '{name}'")
        assert {r.data.tags.get("backbone") for r in runs} >= set(BACKBONES), name
        assert all(r.info.status == "FINISHED" for r in runs), name
    assert not (project / "mlflow.db").exists()
