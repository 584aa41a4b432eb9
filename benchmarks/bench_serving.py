"""A registered model + a ~1-megapixel JPEG -> p50/p95/p99 latency and images/s through a real `mlflow models serve`
on 127.0.0.1 (1 image and batches of 16 per request, 1 and 4 concurrent clients), against the model's bare compiled
forward on the same images and against loading the model on every request; with the ratios against the targets.

Run by hand from the repo root, after the pipeline: `python benchmarks/bench_serving.py [--model-uri URI]
[--requests 40] [--seconds 60] [--workers 1] [--guarded] [--server-env KEY=VALUE ...]`.
The model defaults to the champion (serve.model_uri); MLFLOW_TRACKING_URI, if set, names the store.
Every loop stops after --requests requests or --seconds seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.served.images import load_image
from pipeline.served.schema import IMAGE_COLUMN
from pipeline.served.settings import ServingSettings
from serve import model_uri, use_tracking_store
from serve.process import free_port, launch, stop, wait_until_up

ROOT = Path(__file__).resolve().parent.parent

PHOTOS = ROOT.parent / "shared" / "photos"
PHOTO_SIZE = (1224, 816)  # 0.999 megapixels, a 3:2 photo
BATCH = 16


def photos(count: int) -> list[bytes]:
    """Real photos (airplane, automobile, other, in turns) upscaled to ~1 megapixel, as JPEG bytes."""
    folders = [sorted((PHOTOS / name).glob("*.jpg")) for name in ("airplane", "automobile", "other")]
    paths = [path for group in zip(*folders) for path in group][:count]
    out = []
    for path in paths:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize(PHOTO_SIZE, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def timed(call, requests: int, seconds: float) -> list[float]:
    """Seconds per call, after one untimed warm-up call; at most `requests` calls and about `seconds` in all."""
    call()
    times, deadline = [], time.monotonic() + seconds
    while len(times) < requests and time.monotonic() < deadline:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float], images_per_call: int, wall: float | None = None) -> dict:
    """Latencies -> p50/p95/p99 in ms and images/s (over the wall time if clients ran concurrently)."""
    p50, p95, p99 = np.percentile(np.array(times) * 1000, [50, 95, 99])
    rate = images_per_call * len(times) / (wall if wall is not None else sum(times))
    return {"n": len(times), "p50": p50, "p95": p95, "p99": p99, "img/s": rate}


def post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        rows = json.load(response)["predictions"]
    assert rows and all("answer" in row for row in rows), rows


def load_test(url: str, body: bytes, clients: int, requests: int, seconds: float) -> tuple[list[float], float]:
    """`clients` threads POST body until `requests` requests in all are done or `seconds` pass -> latencies, wall time."""
    post(url, body)  # warm-up: the server's first request traces the model
    times, lock, deadline = [], threading.Lock(), time.monotonic() + seconds
    started = [0]

    def client():
        while time.monotonic() < deadline:
            with lock:
                if started[0] >= requests:
                    return
                started[0] += 1
            start = time.perf_counter()
            post(url, body)
            with lock:
                times.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, time.perf_counter() - start


def bare_forward(keras_file: str, inputs: np.ndarray, requests: int, seconds: float) -> dict:
    """The champion's Keras model alone: compiled forward on already decoded uint8 inputs, batch 1 and 16."""
    import keras
    import tensorflow as tf

    import pipeline.model  # noqa: F401  registers the custom preprocessing layer

    model = keras.saving.load_model(keras_file)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return {
        "bare forward, 1 image": summary(timed(lambda: forward(inputs[:1])["probability"].numpy(), requests, seconds), 1),
        f"bare forward, batch {BATCH}": summary(timed(lambda: forward(inputs[:BATCH])["probability"].numpy(), requests, seconds), BATCH),
    }


def load_every_time(keras_file: str, jpeg: bytes, size: int, requests: int, seconds: float) -> dict:
    """The original app's way, per request: load the model from disk, decode the whole JPEG, resize, predict()."""
    import keras

    import pipeline.model  # noqa: F401

    def request():
        model = keras.saving.load_model(keras_file)
        image = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((size, size))
        model.predict(np.asarray(image, dtype=np.uint8)[None], verbose=0)

    return {"load model per request, 1 image": summary(timed(request, requests, seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-uri", default=None, help="default: the champion (MODEL_URI or conf/mlflow)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests (or calls) per measurement, at most")
    parser.add_argument("--seconds", type=float, default=60, help="seconds per measurement, at most")
    parser.add_argument("--workers", default="1", help="`mlflow models serve -w`")
    parser.add_argument("--guarded", action="store_true", help="also measure the guarded app (serve.asgi)")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment for the servers, e.g. TF_NUM_INTEROP_THREADS=1")
    args = parser.parse_args()

    use_tracking_store()
    uri = args.model_uri or model_uri()
    import mlflow.artifacts

    artifacts = Path(mlflow.artifacts.download_artifacts(uri)) / "artifacts"
    settings = ServingSettings.load(artifacts / "serving_settings")
    keras_file = str(artifacts / "model.keras")
    size = settings.input_size

    jpegs = photos(BATCH)
    inputs = np.stack([load_image(data, size, settings.max_pixels) for data in jpegs])
    bodies = {
        count: json.dumps({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[base64.b64encode(d).decode()] for d in jpegs[:count]]}}).encode()
        for count in (1, BATCH)
    }
    rows = {}
    rows.update(bare_forward(keras_file, inputs, args.requests, args.seconds))

    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""), "MODEL_URI": uri}
    env.update(item.split("=", 1) for item in args.server_env)
    # A fresh port per server: a stopped server's last child may hold its port for a moment.
    servers = {
        f"mlflow models serve -w {args.workers}": lambda port: [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
            "-w", args.workers, "-h", "127.0.0.1", "-p", str(port)],
    }
    if args.guarded:
        servers["guarded app (serve.asgi)"] = lambda port: [
            sys.executable, "-m", "uvicorn", "--factory", "serve.asgi:create_app",
            "--workers", args.workers, "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryDirectory() as logs:
        for name, command in servers.items():
            port = free_port()
            process = launch(command(port), env, Path(logs) / "server.log")
            try:
                wait_until_up(process, f"http://127.0.0.1:{port}/ping", Path(logs) / "server.log", limit_s=180)
                url = f"http://127.0.0.1:{port}/invocations"
                for count in (1, BATCH):
                    for clients in (1, 4):
                        times, wall = load_test(url, bodies[count], clients, args.requests, args.seconds)
                        rows[f"{name}, {count} image{'s' * (count > 1)}/request, {clients} client{'s' * (clients > 1)}"] = summary(times, count, wall)
            finally:
                stop(process)

    # Again after the servers, so a change in the machine's load shows; the better of the two is the reference.
    again = bare_forward(keras_file, inputs, args.requests, args.seconds)
    for key, value in again.items():
        rows[key + " (again)"] = value
    rows.update(load_every_time(keras_file, jpegs[0], size, min(args.requests, 10), args.seconds))

    print(f"\nmodel {uri} ({settings.weights}, {size}px); JPEG {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {len(jpegs[0]) // 1024} KiB; "
          f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; server env {args.server_env or 'default'}")
    print(f"{'':60s} {'n':>3s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'img/s':>7s}")
    for name, row in rows.items():
        print(f"{name:60s} {row['n']:3d} {row['p50']:8.1f} {row['p95']:8.1f} {row['p99']:8.1f} {row['img/s']:7.1f}")

    one = min(rows["bare forward, 1 image"]["p50"], rows["bare forward, 1 image (again)"]["p50"])
    one_rate = max(rows["bare forward, 1 image"]["img/s"], rows["bare forward, 1 image (again)"]["img/s"])
    many = max(rows[f"bare forward, batch {BATCH}"]["img/s"], rows[f"bare forward, batch {BATCH} (again)"]["img/s"])
    print(f"\nreference, the better of the two bare runs: p50 {one:.1f} ms and {one_rate:.1f} img/s with 1 image, "
          f"{many:.1f} img/s with batch {BATCH}")
    for name, row in rows.items():
        if name.endswith("1 image/request, 1 client"):
            print(f"{name:60s} p50 / bare p50 = {row['p50'] / one:5.2f}x  (target <= 1.5x)")
        elif "1 image/request" in name:  # concurrent clients: latency queues up by design; compare throughput
            print(f"{name:60s} img/s / bare img/s = {row['img/s'] / one_rate:5.2f}  (no target)")
        elif f"{BATCH} images/request" in name:
            print(f"{name:60s} img/s / bare img/s = {row['img/s'] / many:5.2f}  (target >= 0.7)")
    reload = rows["load model per request, 1 image"]["p50"]
    served = rows[f"mlflow models serve -w {args.workers}, 1 image/request, 1 client"]["p50"]
    print(f"load model per request: p50 {reload:.0f} ms, {reload / served:.1f}x the served p50")


if __name__ == "__main__":
    main()
