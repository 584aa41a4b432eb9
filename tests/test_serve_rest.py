"""REST serving, for real: a tiny registered model -> `mlflow models serve` and the guarded app answer photos, refuse bad input cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, encode, gradient
from helpers.serving import ANSWERS, MODEL_NAME, PHOTOS, b64, post, real_photos, register_tiny_model, split

from pipeline.served.schema import IMAGE_COLUMN
from serve.process import free_port, launch, stop, wait_until_up

pytestmark = pytest.mark.slow  # registers a model, starts real servers

MAX_BODY_BYTES = 2_000_000  # the guarded server's body limit here


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    return register_tiny_model(tmp_path_factory.getbasetemp() / "serve_store")


@pytest.fixture(scope="module")
def servers(tracking_uri, tmp_path_factory):
    """Both servers on free 127.0.0.1 ports -> {"mlflow": url, "guarded": url} of /invocations."""
    logs = tmp_path_factory.mktemp("serve_logs")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODEL_URI": f"models:/{MODEL_NAME}@champion",
        "SERVE_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "SERVE_MAX_CONCURRENT": "1",  # so that two requests at once show the 503
        "SERVE_BODY_SECONDS": "2",  # so that a stalled body shows the 408 quickly
        "SERVE_HEAD_SECONDS": "2",  # and a stalled request head its closed connection
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),  # `mlflow models serve` runs `uvicorn` from PATH
    }
    ports = {"mlflow": free_port(), "guarded": free_port()}
    commands = {
        "mlflow": [sys.executable, "-m", "mlflow", "models", "serve", "-m", env["MODEL_URI"], "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(ports["mlflow"])],
        "guarded": [sys.executable, "-m", "serve.asgi"],  # the README's command: HOST and PORT from the environment
    }
    envs = {"mlflow": env, "guarded": {**env, "HOST": "127.0.0.1", "PORT": str(ports["guarded"])}}
    processes = {name: launch(command, envs[name], logs / f"{name}.log") for name, command in commands.items()}
    try:
        for name, process in processes.items():  # both load the model at the same time
            wait_until_up(process, f"http://127.0.0.1:{ports[name]}/ping", logs / f"{name}.log")
        yield {name: f"http://127.0.0.1:{port}/invocations" for name, port in ports.items()}
    finally:
        for process in processes.values():
            stop(process)


BOUNDARY = "----test-boundary-7f3a"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    """(field name, file name or None for a plain field, content) parts -> a multipart/form-data body, as curl -F sends it."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += (b"Content-Type: application/octet-stream\r\n" if filename else b"") + b"\r\n" + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def check_verdicts(body: str, count: int) -> None:
    rows = json.loads(body)["predictions"]
    assert len(rows) == count
    for row in rows:
        assert row["answer"] in ANSWERS
        assert (row["model_name"], row["model_version"]) == (MODEL_NAME, "1")  # the champion, as registered
        assert row["model_weights"] == "random init"  # the tiny model says so with every answer
        assert row["model_runtime"].startswith("openvino ")  # it agreed with Keras at registration (register.runtime)
        assert abs(row["p_airplane"] + row["p_automobile"] - 1) < 1e-6


@pytest.mark.parametrize("server", ["mlflow", "guarded"])
def test_real_photos_in_one_batch(servers, server):
    photos = real_photos(per_folder=3)
    status, body = post(servers[server], split(*(p.read_bytes() for p in photos)))
    assert status == 200, body
    check_verdicts(body, len(photos))


@pytest.mark.parametrize("server", ["mlflow", "guarded"])
def test_every_good_kind_of_image(servers, server, good_images):
    for kind, data in good_images.items():
        status, body = post(servers[server], split(data))
        assert status == 200, f"{kind}: {body}"
        check_verdicts(body, 1)
    records = {"dataframe_records": [{IMAGE_COLUMN: b64(data)} for data in good_images.values()]}
    status, body = post(servers[server], records)
    assert status == 200, body
    check_verdicts(body, len(good_images))


def test_team_images_upscaled_and_reencoded_in_every_format(servers):
    """The team dataset's 32x32 images, upscaled to a photo's size and saved in each format, answered alike."""
    from PIL import Image

    team = [sorted((ROOT / "data" / name).glob("*.jpg"))[0] for name in ("airplane", "automobile", "other")]
    images = []
    for path in team:
        large = Image.open(path).convert("RGB").resize((640, 480), Image.Resampling.BICUBIC)
        images += [encode(large, fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")]
    status, body = post(servers["mlflow"], split(*images))
    assert status == 200, body
    check_verdicts(body, len(images))


def bad_requests(bad_images: dict[str, bytes]) -> dict[str, tuple]:
    """name -> (body, content type, expected status, words the message must contain)."""
    good = encode(gradient(), "PNG")
    # Each bad image goes second in its batch: the message must name image 1.
    expected = {
        "empty": "image 1: empty file",
        "not an image": "image 1: not an image",
        "truncated": "image 1: truncated",
        "truncated header": "image 1: truncated",
        "pixels": "over the limit",
    }
    cases = {f"image {name}": (split(good, data), "application/json", 400, expected[name]) for name, data in bad_images.items()}
    cases.update(
        {
            "not base64": ({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[b64(good)], ["@@not base64@@!"]]}}, "application/json", 400, "image 1: not valid base64"),
            "number, not bytes": ({"dataframe_records": [{IMAGE_COLUMN: 7}]}, "application/json", 400, "image 0: expected"),
            "wrong column": ({"dataframe_split": {"columns": ["picture"], "data": [[b64(good)]]}}, "application/json", 400, "['image']"),
            "missing column": ({"dataframe_records": [{"picture": b64(good)}]}, "application/json", 400, "['image']"),
            "malformed JSON": (b'{"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [["iVBOR', "application/json", 400, "not valid JSON"),
            "not UTF-8": (b"\xff\xfe\x00garbage", "application/json", 400, "not valid JSON"),
            "empty batch": ({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": []}}, "application/json", 400, "empty batch"),
            "empty records": ({"dataframe_records": []}, "application/json", 400, "empty batch"),
            "inputs format": ({"inputs": {IMAGE_COLUMN: [b64(good)]}}, "application/json", 400, "dataframe_split"),
            "no format field": ({"images": [b64(good)]}, "application/json", 400, "dataframe_split"),
            "over the size limit": (split(b"\0" * MAX_BODY_BYTES), "application/json", 413, "limit"),
            "wrong content type": (b64(good).encode(), "image/png", 415, "content types"),
            "CSV naming a file on the server": (f"image\n{ROOT / 'README.md'}\n".encode(), "text/csv", 415, "CSV"),
            "form-urlencoded (curl --data-binary without -H)": (b64(good).encode(), "application/x-www-form-urlencoded", 415, "multipart/form-data"),
            "form with a bad image": (form(("image", "a.png", good), ("image", "b.png", b"hello")), FORM, 400, "image 1: not an image"),
            "form without a file part": (form(("image", None, b"just text")), FORM, 400, "no file part"),
            "form without a boundary": (form(("image", "a.png", good)), "multipart/form-data", 400, "no boundary"),
            "form cut short": (form(("image", "a.png", good))[:-40], FORM, 400, "no closing boundary"),
            "form malformed": (f"garbage\r\n--{BOUNDARY}--\r\n".encode(), FORM, 400, "malformed multipart"),
            "form part without a name": (form(("image", "a.png", good)).replace(b'name="image"; ', b""), FORM, 400, "malformed multipart"),
            "empty form": (b"", FORM, 400, "empty body"),
            "form over the image limit": (form(*[("image", "a.png", good)] * 65), FORM, 413, "SERVE_MAX_IMAGES"),
            "form over the size limit": (form(("image", "a.png", b"\0" * MAX_BODY_BYTES)), FORM, 413, "limit"),
            "empty octet-stream": (b"", "application/octet-stream", 400, "empty body"),
            "octet-stream not an image": (b"hello", "application/octet-stream", 400, "image 0: not an image"),
            "octet-stream over the pixel limit": (bad_images["pixels"], "application/octet-stream", 400, "over the limit"),
            "octet-stream over the size limit": (b"\0" * (MAX_BODY_BYTES + 1), "application/octet-stream", 413, "limit"),
        }
    )
    return cases


def test_bad_input_is_refused_cleanly_and_the_server_keeps_answering(servers, bad_images):
    url = servers["guarded"]
    good = encode(gradient(), "JPEG")
    for name, (body, content_type, status, words) in bad_requests(bad_images).items():
        got, text = post(url, body, content_type)
        assert got == status, f"{name}: {got} {text}"
        error = json.loads(text)
        assert set(error) == {"error_code", "message"}, f"{name}: {text}"
        assert words in error["message"], f"{name}: {error['message']}"
        assert "Traceback" not in text and "\\x" not in text, f"{name}: {text}"  # no stack trace, no bytes
        assert b64(good)[:16] not in text and "iVBOR" not in text, f"{name}: echoes the input: {text}"
        got, text = post(url, split(good))
        assert got == 200, f"after {name}: {text}"


def test_raw_uploads_answer_as_json_does(servers):
    """Photo files as multipart/form-data parts (curl -F) and as an application/octet-stream body (curl --data-binary):
    the guarded server answers them with the same verdict rows as the same photos in JSON."""
    url = servers["guarded"]
    plane, car = (sorted((PHOTOS / folder).glob("*.jpg"))[0].read_bytes() for folder in ("airplane", "automobile"))
    status, as_json = post(url, split(plane, car))
    assert status == 200, as_json
    # Any field names; a plain (non-file) field beside them is not an image and is ignored.
    status, text = post(url, form(("image", "plane.jpg", plane), ("note", None, b"two photos"), ("photo", "car.jpg", car)), FORM)
    assert status == 200, text
    check_verdicts(text, 2)
    assert json.loads(text) == json.loads(as_json)
    status, one_json = post(url, split(car))
    status, text = post(url, car, "application/octet-stream")
    assert status == 200, text
    check_verdicts(text, 1)
    assert json.loads(text) == json.loads(one_json)


@pytest.mark.parametrize("server", ["mlflow", "guarded"])
def test_on_bad_image_report_answers_the_good_images_and_names_the_bad(servers, server, bad_images):
    """The batch-scoring mode over REST: a bad image gets answer "" and its reason, the others their verdicts."""
    good = encode(gradient(), "JPEG")
    body = {**split(good, bad_images["truncated"], good), "params": {"on_bad_image": "report"}}
    status, text = post(servers[server], body)
    assert status == 200, text
    rows = json.loads(text)["predictions"]
    assert [row["refused"] != "" for row in rows] == [False, True, False]
    assert "truncated" in rows[1]["refused"] and rows[1]["answer"] == ""
    assert rows[0]["answer"] in ANSWERS and rows[0] == rows[2]
    status, text = post(servers[server], {**split(good), "params": {"on_bad_image": "ignore"}})
    assert status == 400 and "on_bad_image" in json.loads(text)["message"], text


def raw_exchange(url: str, head: bytes, timeout_s: float = 10) -> bytes:
    """Send raw bytes to the server of url and read what it answers until it closes or timeout_s passes."""
    import socket

    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    with socket.create_connection((host, port), timeout=timeout_s) as connection:
        connection.sendall(head)
        answer = b""
        for _ in range(100):  # bounded: at most 100 reads
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                break
            if not chunk or b"\r\n\r\n" in answer + chunk:
                return answer + chunk
            answer += chunk
    return answer


def closed_within(url: str, head: bytes, seconds: float) -> bool:
    """Send head, then nothing: whether the server closes the connection within seconds."""
    import socket

    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    with socket.create_connection((host, port), timeout=seconds) as connection:
        connection.sendall(head)
        try:
            return connection.recv(65536) == b""  # end of stream: closed by the server, unanswered
        except TimeoutError:
            return False


def test_limits_refuse_before_the_work_and_the_server_keeps_answering(servers):
    url = servers["guarded"]
    tiny_png = encode(gradient(1, 1), "PNG")
    status, text = post(url, split(*[tiny_png] * 10_000))  # 10,000 images in well under the body limit
    assert status == 413 and "SERVE_MAX_IMAGES" in json.loads(text)["message"], text
    status, text = post(url, {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[]] * 400_000}})  # 400,000 empty items
    assert status == 413 and "SERVE_MAX_IMAGES" in json.loads(text)["message"], text
    status, text = post(url, b"[" * 50_000 + b"]" * 50_000)
    assert status == 400 and "nested too deeply" in json.loads(text)["message"], text
    # A 4 GB Content-Length followed by a few bytes: the 413 comes from the header, without waiting for the body.
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000000\r\n\r\n{}"
    assert raw_exchange(url, head).startswith(b"HTTP/1.1 413"), "no 413 before the body"
    # A body that stalls (10 of 100 declared bytes, then nothing): 408 after SERVE_BODY_SECONDS, its slot freed.
    stalled = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"datafra"
    assert raw_exchange(url, stalled).startswith(b"HTTP/1.1 408"), "no 408 for a stalled body"
    # A connection that sends nothing, and one whose head stalls halfway: closed after SERVE_HEAD_SECONDS.
    for head in (b"", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-"):
        assert closed_within(url, head, seconds=8), f"a connection that sent {head!r} was still open after 8 s"
    for route in ("/docs", "/redoc", "/openapi.json"):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url.replace("/invocations", route), timeout=10)
    assert post(url, split(tiny_png))[0] == 200


def test_more_concurrent_requests_than_allowed_get_503_with_retry_after(servers):
    """The guarded server here allows one request at a time (SERVE_MAX_CONCURRENT=1)."""
    from concurrent.futures import ThreadPoolExecutor

    batch = split(*[p.read_bytes() for p in real_photos(per_folder=5)])  # long enough to overlap

    def attempt(_) -> tuple[int, str, str | None]:
        request = urllib.request.Request(servers["guarded"], data=json.dumps(batch).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read().decode(), None
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), err.headers.get("Retry-After")

    for _ in range(3):  # bounded: three rounds of four requests at once
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(attempt, range(4)))
        assert {status for status, _, _ in results} <= {200, 503}, results
        refused = [(text, retry) for status, text, retry in results if status == 503]
        if refused and any(status == 200 for status, _, _ in results):
            break
    assert refused, "four requests at once, none refused"
    assert refused[0][1] == "1" and "SERVE_MAX_CONCURRENT" in json.loads(refused[0][0])["message"]
    assert post(servers["guarded"], batch)[0] == 200  # and then it answers again


def test_plain_mlflow_server_refuses_bad_images_with_4xx_naming_the_item(servers, bad_images):
    """What `mlflow models serve` alone gives: the model's message with the item, inside MLflow's wording."""
    url = servers["mlflow"]
    good = encode(gradient(), "PNG")
    for name, data in bad_images.items():
        status, text = post(url, split(good, data))
        assert status == 400, f"{name}: {text}"
        assert "image 1: " in json.loads(text)["message"], f"{name}: {text}"
        assert post(url, split(good))[0] == 200


def test_client_prints_one_line_per_photo(servers, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    photos = real_photos(per_folder=2)
    command = [sys.executable, "-m", "serve.client", *map(str, photos), str(tmp_path), "--url", servers["guarded"]]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(photos) + 1, result.stdout + result.stderr
    for line, photo in zip(lines, photos):
        path, answer, confidence, *_ = line.split("\t")
        assert path == str(photo) and answer in ANSWERS and 0.0 <= float(confidence) <= 1.0
    assert lines[-1].startswith(str(tmp_path / "broken.jpg")) and "not an image" in lines[-1]
    assert result.returncode == 1  # a photo failed


def test_streamlit_page_through_the_endpoint(servers, tracking_uri, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SERVING_URL", servers["guarded"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # the page's heatmaps load the champion's network: this store's, not the project's
    page = AppTest.from_file(str(ROOT / "serve" / "app.py"), default_timeout=60).run()
    photo = real_photos(per_folder=1)[0]
    page.file_uploader[0].set_value([(photo.name, photo.read_bytes(), "image/jpeg"), ("notes.png", b"hello", "image/png")])
    page.button[0].click().run()
    assert not page.exception
    assert any(photo.name in m.value and "confidence" in m.value for m in page.markdown)
    assert [e.value for e in page.error] == ["notes.png: HTTP 400: image 0: not an image (no format Pillow reads recognises it)"]


def platform_env(port: int, tracking_uri: str) -> dict:
    """The environment a platform gives a process: PORT set, our executables on PATH, the model the
    default one (the configured registered model @champion, loaded by the process itself)."""
    env = {
        **os.environ,
        "PORT": str(port),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    for name in ("MODEL_URI", "SERVING_URL"):
        env.pop(name, None)
    return env


def test_procfile_web_command_honours_port(tracking_uri, tmp_path):
    """The Procfile's web process, run as a platform would (a shell, PORT set), serves the champion on PORT."""
    command = (ROOT / "Procfile").read_text().partition("web:")[2].strip()
    port = free_port()
    process = launch(["bash", "-c", command], platform_env(port, tracking_uri), tmp_path / "web.log")
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/ping", tmp_path / "web.log")
        status, body = post(f"http://127.0.0.1:{port}/invocations", split(encode(gradient(), "JPEG")))
        assert status == 200, body
        check_verdicts(body, 1)
    finally:
        stop(process)


def test_the_page_images_command_honours_port(tracking_uri, tmp_path):
    """The Dockerfile's page target's command, run as its container runs it (sh, PORT set at start), serves the page on PORT."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    page_stage = dockerfile.partition("FROM serving AS page")[2].partition("\nFROM ")[0]
    command = json.loads(next(line for line in page_stage.splitlines() if line.startswith("CMD "))[4:])
    port = free_port()
    process = launch(command, platform_env(port, tracking_uri), tmp_path / "page.log")
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/_stcore/health", tmp_path / "page.log", limit_s=60)
    finally:
        stop(process)


def test_dockerfile_keeps_step_with_mlflows_own(tracking_uri, tmp_path):
    """Docker cannot run here: check our Dockerfile against the one `mlflow models generate-dockerfile` writes."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    command = [sys.executable, "-m", "mlflow", "models", "generate-dockerfile", "-m", f"models:/{MODEL_NAME}@champion",
               "-d", str(tmp_path), "--env-manager", "local"]
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    theirs = (tmp_path / "Dockerfile").read_text().splitlines()
    ours = (ROOT / "Dockerfile").read_text()
    base = next(line for line in theirs if line.startswith("FROM ")).split()[1]
    mlflow_pin = next(line for line in theirs if "pip install mlflow==" in line).split()[-1]
    install = next(line for line in theirs if "_install_pyfunc_deps" in line)
    assert f"ARG BASE_IMAGE={base}" in ours and f"pip install {mlflow_pin}" in ours and install in ours
    assert 'CMD ["python", "-m", "serve.asgi"]' in ours and "USER serving" in ours and "HEALTHCHECK" in ours
    assert "COPY model_dir /opt/ml/model" in ours and (tmp_path / "model_dir" / "MLmodel").exists()
    for source in ("serve/", "pipeline/", "conf/mlflow/"):  # what the image's command needs from the project
        assert f"COPY {source} {source}" in ours and (ROOT / source).is_dir()


def test_start_up_fails_fast_in_one_line_without_a_store_or_a_free_port(tmp_path):
    env = {**os.environ, "MODEL_URI": f"models:/{MODEL_NAME}@champion", "HOST": "127.0.0.1", "PORT": str(free_port())}
    missing = tmp_path / "nowhere.db"
    done = subprocess.run([sys.executable, "-m", "serve.asgi"], env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{missing}"},
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and f"no MLflow store at sqlite:///{missing}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not missing.exists()  # no empty store made on the way

    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = {**env, "PORT": str(busy.getsockname()[1])}
        done = subprocess.run([sys.executable, "-m", "serve.asgi"], env=taken, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "cannot listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr


# A fresh interpreter outside the project, as `mlflow models serve` loads a model: what was imported, and from where.
SHIPPED_CODE_PROBE = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
answer = model.predict(pd.DataFrame({"image": [open(sys.argv[2], "rb").read()]})).answer[0]
import pipeline
print(json.dumps({"pipeline": pipeline.__file__, "modules": sorted(m for m in sys.modules if m.startswith("pipeline")), "answer": answer}))
"""


def test_the_logged_model_runs_only_the_served_code_it_ships(tracking_uri, tmp_path):
    """code_paths ships pipeline/served/ alone, so a model that needed any other pipeline/ module would fail here."""
    photo = real_photos(1)[0]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run(
        [sys.executable, "-c", SHIPPED_CODE_PROBE, f"models:/{MODEL_NAME}@champion", str(photo)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["pipeline"]).parent.parent.name == "code" and ROOT not in Path(found["pipeline"]).parents, found["pipeline"]
    assert found["modules"] and all(m == "pipeline" or m.startswith("pipeline.served") for m in found["modules"]), found["modules"]
    assert found["answer"] in ANSWERS
