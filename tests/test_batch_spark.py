"""Batch scoring, for real: local Spark scores ../shared/photos with the champion through spark_udf -> the REST server's answers, bad files refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.serving import MODEL_NAME, PHOTOS, post, register_tiny_model, split

from serve.process import free_port, launch, stop, wait_until_up

pytestmark = [
    pytest.mark.slow,  # starts Spark and a real `mlflow models serve`
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (.ci/run installs it)"),
]
pyspark = pytest.importorskip("pyspark", reason="batch scoring needs requirements-spark.txt")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    uri = register_tiny_model(tmp_path_factory.getbasetemp() / "serve_store")
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}


@pytest.fixture(scope="module")
def rest_answers(env, tmp_path_factory) -> dict[str, dict]:
    """photo path -> the verdict `mlflow models serve` gives it, asked in batches of at most 64."""
    port, log = free_port(), tmp_path_factory.mktemp("rest") / "server.log"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = launch(command, env, log)
    try:
        wait_until_up(server, f"http://127.0.0.1:{port}/ping", log)
        photos = sorted(PHOTOS.rglob("*.jpg"))
        answers = {}
        for start in range(0, len(photos), 64):
            chunk = photos[start : start + 64]
            status, body = post(f"http://127.0.0.1:{port}/invocations", split(*(p.read_bytes() for p in chunk)))
            assert status == 200, body
            answers.update(zip(map(str, chunk), json.loads(body)["predictions"]))
        return answers
    finally:
        stop(server)


def test_spark_scores_the_photos_as_the_rest_server_does_and_reports_bad_files(env, rest_answers, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("not an image")
    photo = next(PHOTOS.glob("airplane/*.jpg")).read_bytes()
    (bad / "truncated.jpg").write_bytes(photo[: len(photo) // 3])
    output = tmp_path / "verdicts.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "serve.batch", str(PHOTOS), str(bad), "--output", str(output), "--master", "local[2]"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    verdicts = pd.read_parquet(output)
    verdicts["path"] = verdicts["path"].str.removeprefix("file:")
    answered = verdicts[verdicts["refused"].isna()].set_index("path")
    assert set(answered.index) == set(rest_answers)  # every photo once, and only the photos
    for path, rest in rest_answers.items():
        row = answered.loc[path]
        assert row["answer"] == rest["answer"], path
        assert abs(row["p_airplane"] - rest["p_airplane"]) < 1e-5, path
        assert abs(row["neither_score"] - rest["neither_score"]) < 1e-5, path
        assert (row["model_name"], row["model_version"], row["model_runtime"]) == (rest["model_name"], rest["model_version"], rest["model_runtime"])
    assert (answered["model_version"] == "1").all()  # the champion, as registered

    refused = verdicts[verdicts["refused"].notna()].set_index("path")["refused"].to_dict()
    assert set(refused) == {str(PHOTOS / "README.md"), str(bad / "notes.txt"), str(bad / "truncated.jpg")}
    assert "not an image" in refused[str(bad / "notes.txt")] and "truncated" in refused[str(bad / "truncated.jpg")]
    assert verdicts.loc[verdicts["refused"].notna(), "answer"].isna().all()

    counts = answered["answer"].value_counts()
    summary = ", ".join(f"{answer} {counts[answer]}" for answer in sorted(counts.index))
    assert f"{len(verdicts)} files: {summary}; 3 refused" in done.stdout
    assert f"refused file:{bad / 'truncated.jpg'}: " in done.stdout
