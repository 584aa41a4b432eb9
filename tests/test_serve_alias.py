"""The guarded server follows its alias, for real: models:/NAME@champion moved to another version while two
clients keep asking -> the answers switch to the new version, every request answered."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter

import pytest
from helpers.serving import MODEL_NAME, PHOTOS, post, register_tiny_model, split
from mlflow import MlflowClient

from serve.process import free_port, launch, stop, wait_until_up

pytestmark = pytest.mark.slow  # registers a model, starts a real server

CLIENTS = 2
SWAP_LIMIT_S = 120  # for the new version to be loaded, warmed up and answering


def ask_until(url: str, photo: bytes, done: threading.Event, answers: list) -> None:
    """One client: the photo again and again until done (bounded: 5,000 requests), each (status, version) kept."""
    for _ in range(5000):
        if done.is_set():
            return
        try:
            status, text = post(url, split(photo))
        except OSError as err:  # a refused or dropped connection is a failed request too
            answers.append((repr(err), None))
            continue
        answers.append((status, json.loads(text)["predictions"][0]["model_version"] if status == 200 else text[:200]))


def test_the_server_follows_the_alias_with_no_failed_request(tmp_path_factory):
    """v1 is champion; clients ask; the alias moves to v2 (another version of the same network); within
    SWAP_LIMIT_S the answers name v2 and never v1 again, and no request failed on the way."""
    directory = tmp_path_factory.mktemp("alias_store")
    uri = register_tiny_model(directory)  # its own store: the other serving tests' champion stays v1
    client = MlflowClient(uri)
    v1 = client.get_model_version_by_alias(MODEL_NAME, "champion")
    v2 = client.create_model_version(MODEL_NAME, v1.source, run_id=v1.run_id)
    old, new = str(v1.version), str(v2.version)  # as the answers name them
    log, port = directory / "server.log", free_port()
    env = {
        **os.environ, "MLFLOW_TRACKING_URI": uri, "MODEL_URI": f"models:/{MODEL_NAME}@champion",
        "SERVE_ALIAS_SECONDS": "1", "HOST": "127.0.0.1", "PORT": str(port),
    }
    process = launch([sys.executable, "-m", "serve.asgi"], env, log)
    answers: list = []
    done = threading.Event()
    clients = [threading.Thread(target=ask_until, args=(f"http://127.0.0.1:{port}/invocations", photo, done, answers)) for photo in photos()]
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/ping", log)
        for thread in clients:
            thread.start()
        wait_for(lambda: len(answers) >= 10, 60)  # v1 answering under load
        client.set_registered_model_alias(MODEL_NAME, "champion", new)
        moved = time.monotonic()
        wait_for(lambda: sum(version == new for _, version in answers) >= 10, SWAP_LIMIT_S)
        swapped_s = time.monotonic() - moved
    finally:
        done.set()
        for thread in clients:
            thread.join(timeout=60)
        stop(process)

    per_version = Counter(version for _, version in answers)
    print(f"answers per version: {dict(per_version)}; v2 answering {swapped_s:.1f} s after the alias moved")
    assert Counter(status for status, _ in answers) == {200: len(answers)}, [a for a in answers if a[0] != 200][:3]
    assert set(per_version) == {old, new}, per_version
    versions = [version for _, version in answers]
    first_new = versions.index(new)
    # Two clients: the answer to a request that started on v1 may land just after one from v2.
    assert old not in versions[first_new + CLIENTS :], versions[first_new - 5 : first_new + 10]
    assert f"moved from v{old} to v{new}" in log.read_text()


def photos() -> list[bytes]:
    return [sorted((PHOTOS / folder).glob("*.jpg"))[0].read_bytes() for folder in ("airplane", "automobile")[:CLIENTS]]


def wait_for(condition, limit_s: float) -> None:
    """Poll condition every 0.2 s until it holds; fail after limit_s."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit_s} s"
        time.sleep(0.2)

