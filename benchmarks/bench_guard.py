"""A registered model -> what issue 11 asks of the guarded server (`python -m serve.asgi` on 127.0.0.1), measured:
seconds to refuse 10,000 tiny images and a million empty items, /ping latency with 1,000 idle connections open,
4 and 16 concurrent clients for --seconds each (errors, 503s, server memory before and after), and the first
request after /ping says ready against the tenth (after a pause like the first's, and back to back).

Run by hand from the repo root, after the pipeline: `python benchmarks/bench_guard.py [--seconds 60]`.
The model is the champion (serve.model_uri); MLFLOW_TRACKING_URI, if set, names the store. Every loop is
bounded in count and time.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

from pipeline.served.schema import IMAGE_COLUMN
from serve import model_uri, use_tracking_store
from serve.process import free_port, launch, stop, wait_until_up

PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "photos"


def body(images: list[bytes]) -> bytes:
    rows = [[base64.b64encode(image).decode("ascii")] for image in images]
    return json.dumps({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": rows}}).encode()


def post(url: str, data: bytes, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, dict(err.headers)


def seconds_of(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def rss_mib(pid: int) -> float:
    """Resident memory of the server process and its children, in MiB (from /proc)."""
    total = 0
    for task in Path("/proc").glob("[0-9]*"):
        try:
            stat = (task / "stat").read_text().split()
            if int(task.name) == pid or int(stat[3]) == pid:
                total += int(stat[23]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def clients(url: str, photo: bytes, workers: int, seconds: float) -> dict:
    """`workers` clients posting one photo each, back to back for `seconds`; a 503 is retried after Retry-After."""
    counts = {"ok": 0, "503": 0, "errors": 0}
    lock, deadline = threading.Lock(), time.monotonic() + seconds

    def client():
        for _ in range(100_000):  # bounded: the deadline ends it first
            if time.monotonic() > deadline:
                return
            try:
                status, headers = post(url, body([photo]), timeout=60)
            except OSError:
                status, headers = 0, {}
            key = "ok" if status == 200 else "503" if status == 503 else "errors"
            with lock:
                counts[key] += 1
            if status == 503:
                time.sleep(float(headers.get("Retry-After", 1)))

    threads = [threading.Thread(target=client) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60, help="length of each concurrent-clients run")
    args = parser.parse_args()

    tracking_uri = use_tracking_store()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MODEL_URI": model_uri(), "HOST": "127.0.0.1", "PORT": str(port)}
    log = Path(tempfile.mkdtemp()) / "guard.log"
    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, model {env['MODEL_URI']}", flush=True)
    server = launch([sys.executable, "-m", "serve.asgi"], env, log)
    try:
        wait_until_up(server, f"{url}/ping", log, limit_s=300)
        photo_path = sorted((PHOTOS / "airplane").glob("*.jpg"))[0]
        photo = photo_path.read_bytes()
        first, _ = seconds_of(lambda: post(f"{url}/invocations", body([photo])))
        # Like with like: the first request meets a server that has been idle, and an idle CPU
        # answers any request ~10 ms slower than one busy with requests back to back. So the tenth
        # is measured both after the same kind of pause and back to back.
        paused = []
        for _ in range(9):
            time.sleep(1)
            paused.append(seconds_of(lambda: post(f"{url}/invocations", body([photo])))[0])
        busy = [seconds_of(lambda: post(f"{url}/invocations", body([photo])))[0] for _ in range(10)]
        print(f"first request after /ping   {first * 1000:7.1f} ms   tenth, 1 s after the ninth {paused[-1] * 1000:7.1f} ms "
              f"(median of 2nd-10th {sorted(paused)[4] * 1000:.1f} ms)   tenth back to back {busy[-1] * 1000:7.1f} ms   ({photo_path.name})")

        tiny = io.BytesIO()
        Image.new("RGB", (1, 1)).save(tiny, "PNG")
        many = body([tiny.getvalue()] * 10_000)
        took, (status, _) = seconds_of(lambda: post(f"{url}/invocations", many))
        print(f"10,000 tiny images          {took * 1000:7.1f} ms   HTTP {status}   ({len(many) / 2**20:.2f} MiB)")
        empty = json.dumps({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[]] * 1_000_000}}).encode()
        took, (status, _) = seconds_of(lambda: post(f"{url}/invocations", empty))
        print(f"a million empty items       {took * 1000:7.1f} ms   HTTP {status}   ({len(empty) / 2**20:.2f} MiB)")

        idle = []
        try:
            for _ in range(1000):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            pings = [seconds_of(lambda: urllib.request.urlopen(f"{url}/ping", timeout=10).read())[0] for _ in range(5)]
            print(f"/ping, 1,000 idle sockets   {max(pings) * 1000:7.1f} ms   (worst of 5)")
        except OSError as err:
            print(f"/ping, 1,000 idle sockets   failed after {len(idle)} sockets: {err}")
        finally:
            for connection in idle:
                connection.close()

        for workers in (4, 16):
            before = rss_mib(server.pid)
            counts = clients(f"{url}/invocations", photo, workers, args.seconds)
            after = rss_mib(server.pid)
            print(f"{workers:2d} clients, {args.seconds:.0f} s        {counts['ok']} answered, {counts['503']} x 503 (retried), "
                  f"{counts['errors']} errors; server memory {before:.0f} -> {after:.0f} MiB; load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        stop(server)


if __name__ == "__main__":
    main()
