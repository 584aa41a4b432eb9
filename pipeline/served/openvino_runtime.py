"""A saved Keras classifier -> OpenVINO IR (export) -> the same Outputs on OpenVINO's CPU runtime, and how far they agree with Keras'.

Registration exports the champion's network, measures the agreement over the validation images and
records the runtime in its ServingSettings (pipeline/stages/register.py); the served model runs whichever
those name. Serving through OpenVINO imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.served.settings import Outputs, ServingSettings

IR_FILE = "model.xml"  # beside it, model.bin: the weights
BATCH = 32  # images per inference call, as keras_runtime.Predictor


def export(model, folder: str | Path) -> Path:
    """A Keras classifier -> folder/model.xml (+ model.bin), through Keras' own exporter."""
    ir = Path(folder) / IR_FILE
    ir.parent.mkdir(parents=True, exist_ok=True)
    model.export(str(ir), format="openvino", verbose=False)
    return ir


class OpenVINOPredictor:
    """Raw uint8 images -> Outputs, on OpenVINO's CPU plugin at the given inference precision.

    "bf16" is OpenVINO's default on a CPU with bfloat16 instructions, "f32" computes as Keras does.
    Each call makes its own infer request: the server predicts several requests at once on threads.
    """

    def __init__(self, ir_path: str | Path, precision: str):
        import openvino

        self.compiled = openvino.Core().compile_model(str(ir_path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
        self.names = [output.get_any_name() for output in self.compiled.outputs]

    def __call__(self, images: np.ndarray) -> Outputs:
        request = self.compiled.create_infer_request()
        batches = []
        for start in range(0, len(images), BATCH):
            request.infer([images[start : start + BATCH].astype(np.float32)])
            batches.append({name: request.get_tensor(output).data.copy() for name, output in zip(self.names, self.compiled.outputs)})
        return Outputs.from_batches(batches)


@dataclass
class Agreement:
    """How far another runtime's answers differ from the reference's over the same images."""

    images: int
    max_probability_difference: float  # largest |p| difference of any class, after calibration
    max_neither_score_difference: float
    flipped_answers: int  # images answered differently (airplane, automobile or neither)

    @property
    def flip_rate(self) -> float:
        return self.flipped_answers / max(self.images, 1)


def agreement(reference: Outputs, candidate: Outputs, settings: ServingSettings) -> Agreement:
    """Compare two runtimes' outputs as served: through the same calibration, score and threshold."""
    ours, theirs = settings.verdicts(reference), settings.verdicts(candidate)
    probabilities = [f"p_{name}" for name in settings.classes]
    return Agreement(
        images=len(ours),
        max_probability_difference=float(np.abs(ours[probabilities].to_numpy() - theirs[probabilities].to_numpy()).max()),
        max_neither_score_difference=float(np.abs(ours.neither_score - theirs.neither_score).max()),
        flipped_answers=int((ours.answer != theirs.answer).sum()),
    )
