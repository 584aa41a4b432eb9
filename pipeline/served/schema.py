"""The served model's columns: class names -> the request column and every answer column, in order, with its MLflow type.

One place for them: register writes them into the model's signature, the served model fills them,
and serve/ reads them.
"""

from __future__ import annotations

IMAGE_COLUMN = "image"  # the request column that carries image file bytes
# predict(params={ON_BAD_IMAGE: "report"}): an unusable image gets answer "" and its reason in column
# REFUSED ("" for the others) instead of failing the whole batch (batch scoring); "fail" (REST's
# default) refuses the request, naming the first bad image.
ON_BAD_IMAGE = "on_bad_image"
REFUSED = "refused"
MODEL_COLUMNS = ("model_name", "model_version", "model_weights", "model_runtime")  # which model made the answer


def score_columns(classes: list[str]) -> list[str]:
    """The columns computed from the network's outputs: the answer, both probabilities, the "neither" score and threshold."""
    return ["answer", *(f"p_{name}" for name in classes), "neither_score", "neither_threshold"]


def verdict_columns(classes: list[str]) -> dict[str, str]:
    """Every answer column -> its MLflow type, in order; REFUSED comes only with on_bad_image=report."""
    return {name: "string" if name == "answer" else "double" for name in score_columns(classes)} | dict.fromkeys((*MODEL_COLUMNS, REFUSED), "string")
