"""Per backbone at its real input size (random weights: the same compute as ImageNet's) -> the bare Keras float32
forward, the bare OpenVINO forward (bf16 and f32) and each served through a real `mlflow models serve` on
127.0.0.1: single-image p50 and images/s at batch 16, with the ratios issue 12 sets targets on.

Run by hand from the repo root: `python benchmarks/bench_openvino.py [--backbones vgg16 resnet50 ...]
[--requests 30] [--seconds 40]`. Each measurement stops after --requests calls or --seconds, whichever
comes first. The served figures include what serving adds: ~1-megapixel JPEGs decoded and resized, JSON
and base64, HTTP on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_serving import BATCH, load_test, photos, summary, timed

from pipeline import config
from pipeline.served import openvino_runtime
from pipeline.served.images import load_image
from pipeline.served.schema import IMAGE_COLUMN
from pipeline.served.settings import ServingSettings
from serve.process import free_port, launch, stop, wait_until_up

BACKBONES = ["vgg16", "resnet50", "inception_v3", "mobilenet_v2"]


def random_classifier(backbone: str, folder: Path) -> tuple[Path, ServingSettings]:
    """The backbone at its configured input size with random weights, heads fitted on random images ->
    folder/model.keras and the ServingSettings that serve it (Keras runtime)."""
    import keras

    from pipeline.config import HeadConfig
    from pipeline.model import build_backbone, build_classifier, build_extractor, build_head

    spec = config.backbone_spec(config.compose([f"backbone={backbone}", f"backbones.{backbone}.weights=null"]))
    extractor = build_extractor(spec, build_backbone(spec))
    maps = np.asarray(extractor(np.random.default_rng(0).integers(0, 256, (8, spec.input_size, spec.input_size, 3), dtype=np.uint8)))
    gap = HeadConfig("gap", "avg", 0, 0.0)
    head, other_head = (build_head(maps.mean(axis=(1, 2)), gap, name) for name in ("probability", "other_probability"))
    build_classifier(extractor, head, "avg", other_head, "avg").save(folder / "model.keras")
    keras.backend.clear_session()
    settings = ServingSettings(
        classes=["airplane", "automobile"], input_size=spec.input_size, source_size=None, max_pixels=40_000_000,
        weights="random init", weights_meaningful=False, temperature=1.0, neither_score="other_probability",
        reject_threshold=0.5, accept_rate=1.0,
    )
    return folder / "model.keras", settings


def save_pyfunc(folder: Path, keras_file: Path, settings: ServingSettings, ir_dir: Path | None) -> Path:
    """The served model as register logs it (pipeline/served/pyfunc.py), saved to a local folder."""
    import mlflow.pyfunc

    from pipeline.packaging import signature
    from pipeline.served.pyfunc import ImageClassifier

    settings.save(folder / "serving")
    artifacts = {"keras_model": str(keras_file), "serving_settings": str(folder / "serving")}
    if ir_dir is not None:
        artifacts["openvino_model"] = str(ir_dir)
    path = folder / "pyfunc"
    mlflow.pyfunc.save_model(path, python_model=ImageClassifier(), artifacts=artifacts, signature=signature(settings.classes),
                             code_paths=[str(Path(config.__file__).parent)])
    return path


def served(model_path: Path, bodies: dict[str, bytes], requests: int, seconds: float) -> dict:
    """`mlflow models serve` on the model: p50 of single-image requests, images/s of batch requests (1 client)."""
    port, logs = free_port(), Path(tempfile.mkdtemp())
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_path), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # MLflow runs `uvicorn`
    process = launch(command, env, logs / "server.log")
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/ping", logs / "server.log", limit_s=300)
        url = f"http://127.0.0.1:{port}/invocations"
        single, _ = load_test(url, bodies["single"], 1, requests, seconds)
        batches, wall = load_test(url, bodies["batch"], 1, requests, seconds)
        return {"p50": summary(single, 1)["p50"], "img/s": summary(batches, BATCH, wall)["img/s"]}
    finally:
        stop(process)


def bare(predict, inputs: np.ndarray, requests: int, seconds: float) -> dict:
    return {
        "p50": summary(timed(lambda: predict(inputs[:1]), requests, seconds), 1)["p50"],
        "img/s": summary(timed(lambda: predict(inputs[:BATCH]), requests, seconds), BATCH)["img/s"],
    }


def measure(backbone: str, jpegs: list[bytes], requests: int, seconds: float) -> dict:
    import keras

    from pipeline.served.keras_runtime import Predictor

    folder = Path(tempfile.mkdtemp(prefix=f"bench_openvino_{backbone}_"))
    keras_file, settings = random_classifier(backbone, folder)
    model = keras.saving.load_model(keras_file)
    ir = openvino_runtime.export(model, folder / "openvino")
    inputs = np.stack([load_image(jpeg, settings.input_size) for jpeg in jpegs])
    rows = {"keras": bare(Predictor(model), inputs, requests, seconds)}
    for precision in ("bf16", "f32"):
        rows[f"openvino {precision}"] = bare(openvino_runtime.OpenVINOPredictor(ir, precision), inputs, requests, seconds)
    keras.backend.clear_session()

    def body(images: list[bytes]) -> bytes:
        rows = [[base64.b64encode(image).decode("ascii")] for image in images]
        return json.dumps({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": rows}}).encode()

    bodies = {"single": body(jpegs[:1]), "batch": body(jpegs[:BATCH])}
    runtimes = {"keras": (settings, None)}
    for precision in ("bf16", "f32"):
        runtimes[f"openvino {precision}"] = (replace(settings, runtime="openvino", openvino_precision=precision), folder / "openvino")
    for name, (served_settings, ir_dir) in runtimes.items():
        model = save_pyfunc(folder / name.replace(" ", "_"), keras_file, served_settings, ir_dir)
        rows[f"served {name}"] = served(model, bodies, requests, seconds)
    return {"input": settings.input_size, **rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbones", nargs="+", default=BACKBONES, choices=BACKBONES)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()

    jpegs = photos(BATCH)
    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; single image p50 in ms, batch of {BATCH} in images/s", flush=True)
    for backbone in args.backbones:
        rows = measure(backbone, jpegs, args.requests, args.seconds)
        base = rows["keras"]
        print(f"\n{backbone} at {rows['input']} px (load average {os.getloadavg()[0]:.2f})")
        for name, row in rows.items():
            if name == "input":
                continue
            print(f"  {name:22s} p50 {row['p50']:8.1f} ms ({row['p50'] / base['p50']:.2f}x bare Keras)   "
                  f"{row['img/s']:7.1f} img/s ({row['img/s'] / base['img/s']:.2f}x bare Keras)", flush=True)


if __name__ == "__main__":
    main()
