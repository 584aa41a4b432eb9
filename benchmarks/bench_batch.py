"""Batch scoring on local Spark (serve/batch.py) against the pyfunc called directly, on the same images ->
start-up cost and images/s of each, and their ratio, with the load average beside each figure.

Run by hand from the repo root, after the pipeline registered a model with `on_bad_image`:
`python benchmarks/bench_batch.py [--model-uri models:/airplane-automobile-classifier@champion]
[--copies 10] [--master local[2]]`. The images are ../shared/photos' 93 real photos, copied --copies
times (Spark reads each copy as its own file). Start-up: Spark's session, then a first job of one
image (Python workers started, the model loaded in each); the pyfunc's load, then its first
prediction. Throughput: a second job over every image, against predict() in calls of
serve.batch.IMAGES_PER_CALL images, one after another in one process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "photos"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def copies_of_photos(folder: Path, copies: int) -> list[Path]:
    photos = sorted(PHOTOS.rglob("*.jpg"))
    for k in range(copies):
        for photo in photos:
            target = folder / f"copy{k}" / photo.parent.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target)
    return sorted(folder.rglob("*.jpg"))


def spark_figures(files_dir: Path, one_dir: Path, model_dir: str, master: str, out: Path, count: int) -> dict:
    from serve import batch

    started = time.perf_counter()
    spark = batch.spark_session(master)
    session_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        classify = batch.classifier(spark, model_dir)
        batch.score(spark, [str(one_dir)], classify, str(out / "one.parquet"))
        first_s = time.perf_counter() - started
        print(f"spark: session {session_s:.1f} s, first job (1 image) {first_s:.1f} s  ({load()})", flush=True)
        started = time.perf_counter()
        batch.score(spark, [str(files_dir)], classify, str(out / "all.parquet"))
        all_s = time.perf_counter() - started
        assert spark.read.parquet(str(out / "all.parquet")).where("refused IS NULL").count() == count
    finally:
        spark.stop()
    print(f"spark: {count} images in {all_s:.1f} s = {count / all_s:.1f} images/s  ({load()})", flush=True)
    return {"startup_s": session_s + first_s, "images_per_s": count / all_s}


def pyfunc_figures(files: list[Path], model_dir: str) -> dict:
    """Run first, in a fresh process: its start-up includes importing what it needs, as Spark's does."""
    started = time.perf_counter()
    import mlflow.pyfunc
    import pandas as pd

    from pipeline.served.schema import IMAGE_COLUMN, ON_BAD_IMAGE
    from serve.batch import IMAGES_PER_CALL

    def frame(paths: list[Path]) -> pd.DataFrame:
        return pd.DataFrame({IMAGE_COLUMN: [p.read_bytes() for p in paths]})

    model = mlflow.pyfunc.load_model(model_dir)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    model.predict(frame(files[:1]), params={ON_BAD_IMAGE: "report"})
    first_s = time.perf_counter() - started
    print(f"pyfunc: imports and load {load_s:.1f} s, first prediction (1 image) {first_s:.1f} s  ({load()})", flush=True)
    started = time.perf_counter()
    answered = 0
    for start in range(0, len(files), IMAGES_PER_CALL):  # files read inside the loop, as Spark reads them inside its job
        answered += len(model.predict(frame(files[start : start + IMAGES_PER_CALL]), params={ON_BAD_IMAGE: "report"}))
    all_s = time.perf_counter() - started
    assert answered == len(files)
    print(f"pyfunc: {len(files)} images in {all_s:.1f} s = {len(files) / all_s:.1f} images/s  ({load()})", flush=True)
    return {"startup_s": load_s + first_s, "images_per_s": len(files) / all_s}


def fetch_model(uri: str | None, folder: Path) -> tuple[str, str]:
    script = (
        "import sys; from serve import model_uri, use_tracking_store; from serve.batch import local_model; "
        "use_tracking_store(); uri = sys.argv[1] or model_uri(); print(uri); print(local_model(uri, sys.argv[2]))"
    )
    done = subprocess.run([sys.executable, "-c", script, uri or "", str(folder)], capture_output=True, text=True, check=True)
    uri, model_dir = done.stdout.strip().splitlines()[-2:]
    return uri, model_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", default=None, help="default: MODEL_URI, else the champion")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        files = copies_of_photos(tmp / "photos", args.copies)
        (tmp / "one").mkdir()
        shutil.copyfile(files[0], tmp / "one" / files[0].name)
        uri, model_dir = fetch_model(args.model_uri, tmp / "model")  # in a child process: this one imports nothing yet
        print(f"{uri}: {len(files)} images ({args.copies} copies of {PHOTOS}), {os.cpu_count()} cores  ({load()})", flush=True)
        direct = pyfunc_figures(files, model_dir)
        spark = spark_figures(tmp / "photos", tmp / "one", model_dir, args.master, tmp, len(files))
    print(f"spark/pyfunc: start-up {spark['startup_s']:.1f} s / {direct['startup_s']:.1f} s, "
          f"throughput {spark['images_per_s'] / direct['images_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
