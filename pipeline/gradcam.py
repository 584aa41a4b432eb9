"""A saved classifier + images and their answers -> Grad-CAM heatmaps (where the model looked), and a heatmap laid over a photo.

As in Keras' Grad-CAM example: the gradient of a head's output with respect to the backbone's last
feature map (the extractor's output, which both heads read), averaged over the map per channel,
weights that map's channels; what is left after a ReLU is where the evidence for the answer lies.
Evaluation draws it over the worst mistakes, the page beside each answer.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HEATMAP_OPACITY = 0.45  # of the heatmap over the photo: enough to see it, not so much that the photo is hidden


def head_for(answer: str, classes: list[str]) -> tuple[str, float]:
    """(the head whose output drove the answer, its sign): the two-way head's P(classes[1]) for a
    class answer (negated for classes[0], whose probability is 1 - p), the "neither" head's
    P(reject class) for "neither"."""
    if answer == classes[1]:
        return "probability", 1.0
    if answer == classes[0]:
        return "probability", -1.0
    return "other_probability", 1.0


def heatmaps(model, images: np.ndarray, answers: list[str], classes: list[str]) -> np.ndarray:
    """uint8 images (n, size, size, 3) and their answers -> (n, h, w) heatmaps in [0, 1] on the feature map's grid."""
    import tensorflow as tf

    extractor = next(layer for layer in model.layers if layer.name.endswith("_extractor"))
    maps = tf.convert_to_tensor(extractor(images, training=False))
    targets = [head_for(answer, classes) for answer in answers]
    with tf.GradientTape() as tape:
        tape.watch(maps)
        outputs = {name: model.get_layer(f"head_{name}")(maps, training=False)[:, 0] for name in {name for name, _ in targets}}
        # Each image's target depends on its own map only, so one gradient of their sum gives them all.
        evidence = tf.stack([outputs[name][i] * sign for i, (name, sign) in enumerate(targets)])
    weights = tf.reduce_mean(tape.gradient(evidence, maps), axis=(1, 2))  # (n, channels)
    cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", maps, weights)).numpy()
    return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)


def overlay(photo: Image.Image, heatmap: np.ndarray) -> Image.Image:
    """The heatmap in colour (jet: red is where the evidence is) stretched over the whole photo, as the
    model squashed the photo to its square input."""
    from matplotlib import colormaps

    colour = Image.fromarray((colormaps["jet"](heatmap)[..., :3] * 255).astype(np.uint8))
    photo = photo.convert("RGB")
    return Image.blend(photo, colour.resize(photo.size, Image.Resampling.BILINEAR), HEATMAP_OPACITY)
