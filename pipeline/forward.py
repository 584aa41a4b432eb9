"""A Keras feature extractor -> its forward pass (images -> feature maps) on Keras or on OpenVINO's CPU runtime, and `embed`, that pass over images in batches.

The embed stage runs the frozen backbone once over every image; on OpenVINO that is 2.6x
Keras' rate here, decoding included (benchmarks/README.md, section 11), with the same maps to 3e-5.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pipeline.served.openvino_runtime import export

if TYPE_CHECKING:  # Spark executors import this module for the OpenVINO forward: no TensorFlow there
    import keras

Forward = Callable[[np.ndarray], np.ndarray]  # a batch of images (n, size, size, 3) -> feature maps (n, h, w, c), float32
OPENVINO_PRECISION = {"float32": "f32", "mixed_bfloat16": "bf16"}  # the backbone's precision, as OpenVINO's hint names it


def keras_forward(extractor: keras.Model) -> Forward:
    """Keras' compiled predict step, one batch at a time."""
    return lambda images: np.asarray(extractor.predict_on_batch(images))


def openvino_forward(extractor: keras.Model, precision: str = "float32", threads: int | None = None) -> Forward:
    """The extractor exported to OpenVINO IR and compiled for the CPU at the backbone's precision.

    threads: OpenVINO's inference threads (default: every core); a Spark task gets its task's cores.
    """
    import openvino

    with tempfile.TemporaryDirectory(prefix="extractor-ir-") as folder:
        compiled = compile_ir(openvino.Core(), export(extractor, folder), precision, threads)
    return compiled_forward(compiled)


def compile_ir(core, ir_path, precision: str, threads: int | None = None):
    # f32 explicitly: on a CPU with bfloat16 instructions OpenVINO would otherwise compute in bf16,
    # which moves MobileNetV2's answers (benchmarks/README.md, section 7).
    options = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision]}
    if threads:
        options["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(str(ir_path), "CPU", options)


def compiled_forward(compiled) -> Forward:
    request = compiled.create_infer_request()

    def forward(images: np.ndarray) -> np.ndarray:
        request.infer([np.asarray(images, dtype=np.float32)])
        return request.get_output_tensor(0).data.copy()

    return forward


def backbone_forward(extractor: keras.Model, runtime: str, precision: str = "float32") -> Forward:
    """embed.runtime -> the forward pass."""
    return openvino_forward(extractor, precision) if runtime == "openvino" else keras_forward(extractor)


def embed(
    forward: Forward,
    images: np.ndarray,
    batch_size: int,
    augmentation: keras.Sequential | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Run the frozen backbone once over images (one augmented view of them, if augmentation).

    A plain loop over batches: it draws the augmentation eagerly in Keras, where a `tf.data` map
    logs a spurious TensorFlow error, and hands each batch to whichever runtime forward is.
    """
    import keras

    if augmentation is not None:
        keras.utils.set_random_seed(seed)  # each view is a different, reproducible draw
    if not len(images):
        raise ValueError("embed: no images to run the backbone over")
    maps = None  # allocated at the first batch's shape: no second copy of the split's maps (3.6 GB for MobileNetV2's train)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if augmentation is not None:
            batch = keras.ops.convert_to_numpy(augmentation(batch, training=True))
        found = forward(batch)
        if maps is None:
            maps = np.empty((len(images), *found.shape[1:]), dtype=found.dtype)
        maps[start : start + len(found)] = found
    return maps
