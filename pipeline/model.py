"""Backbone + heads built from config: raw uint8 images in; P(second class), P(reject class) and the
pooled embedding out, as named outputs.

Preprocessing lives inside the model as a layer, so a saved model takes raw images and training and
serving cannot disagree about it. The frozen backbone is run once per image and augmentation view
(`pipeline.forward.embed`, in the embed stage); the heads train on those cached feature maps (`build_head`), then
`assemble` joins them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from pipeline.errors import UserError
from pipeline.served.keras_runtime import BackbonePreprocess
from pipeline.served.settings import Outputs
from pipeline.weights import keras_cache, resolve_weights

if TYPE_CHECKING:  # the served model loads this module where no config code is installed
    from pipeline.config import AugmentConfig, BackboneConfig, HeadConfig


VARIANCE_FLOOR = 0.01  # of the mean feature variance; see build_head


class WeightsUnavailable(UserError, RuntimeError):
    """ImageNet weights could not be fetched; the message says what to do."""


def build_backbone(spec: BackboneConfig, weights_dir: str | Path | None = None) -> keras.Model:
    """keras.applications.<application>(include_top=False), weights as `resolve_weights` finds them."""
    application = getattr(keras.applications, spec.application)
    source = resolve_weights(spec, weights_dir)
    default_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(spec.precision)  # the applications take no dtype argument
    try:
        return application(
            include_top=False,
            weights=source.path or spec.weights,
            input_shape=(spec.input_size, spec.input_size, 3),
        )
    except Exception as err:
        if source.kind != "imagenet" or source.path:
            raise
        raise WeightsUnavailable(
            f"{spec.application}: no ImageNet weights file here and the download failed ({err}).\n"
            f"Put {spec.weights_file} in the project's weights/ folder (tracked by weights.dvc: "
            f"`dvc pull weights.dvc`, or add it to your DVC remote as the README says) or in "
            f"{keras_cache()}/; or set backbones.{spec.name}.weights to the path of a weights file, "
            f"or to null for random init (the `preset=offline` config does that for this backbone)."
        ) from None
    finally:
        keras.config.set_dtype_policy(default_policy)


def unfreeze(backbone: keras.Model, top_layers: int) -> None:
    """Make the top N layers trainable; BatchNorm stays frozen so its statistics survive."""
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        is_top = i >= len(backbone.layers) - top_layers
        layer.trainable = is_top and not isinstance(layer, keras.layers.BatchNormalization)


def build_augmentation(spec: AugmentConfig) -> keras.Sequential:
    """The augmentation preset as preprocessing layers (identity at inference)."""
    layers = []
    if spec.flip:
        layers.append(keras.layers.RandomFlip(spec.flip))
    if spec.rotation:
        layers.append(keras.layers.RandomRotation(spec.rotation, fill_mode="reflect"))
    if spec.zoom:
        layers.append(keras.layers.RandomZoom(spec.zoom, fill_mode="reflect"))
    if spec.translation:
        layers.append(keras.layers.RandomTranslation(spec.translation, spec.translation, fill_mode="reflect"))
    if spec.contrast:
        layers.append(keras.layers.RandomContrast(spec.contrast))
    return keras.Sequential(layers, name="augment")


def build_extractor(spec: BackboneConfig, backbone: keras.Model) -> keras.Model:
    """Raw images -> the backbone's feature map, what the embed stage caches and every head reads.

    The map, not a pooled vector, so that one cache serves heads that pool and heads that flatten.
    """
    images = keras.Input((spec.input_size, spec.input_size, 3), name="image")
    x = BackbonePreprocess(spec.module, name="preprocess")(images)
    features = backbone(x, training=False)  # BatchNorm keeps its inference statistics
    features = keras.ops.cast(features, "float32")  # the heads and the statistics stay float32 at any precision
    return keras.Model(images, features, name=f"{spec.name}_extractor")


def pool_layer(pooling: str) -> keras.layers.Layer:
    return keras.layers.GlobalAveragePooling2D(name="pool") if pooling == "avg" else keras.layers.Flatten(name="flatten")


def build_head(train_vectors: np.ndarray, spec: HeadConfig, name: str) -> keras.Model:
    """Pooled features (see `pooled`) -> one sigmoid probability; trained on the cached features.

    The inputs are standardised with statistics of the training features: backbones differ in
    feature scale by orders of magnitude (random-init ones most of all), and one learning rate then
    suits them all.
    """
    features = keras.Input(train_vectors.shape[1:], name="features")
    standardise = keras.layers.Normalization(axis=-1, name="standardise")
    standardise.adapt(train_vectors)
    # A feature that is constant on the training images (a dead ReLU unit) has variance 0 and would
    # be divided by ~1e-7, so a test image where it fires gets values near 1e6. Floor the variance.
    variance = keras.ops.convert_to_numpy(standardise.adapt_variance)
    standardise.adapt_variance.assign(np.maximum(variance, VARIANCE_FLOOR * variance.mean()))
    standardise.finalize_state()
    x = standardise(features)
    if spec.hidden_units:
        x = keras.layers.Dense(spec.hidden_units, activation="relu")(x)
    if spec.dropout:
        x = keras.layers.Dropout(spec.dropout)(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name=name)(x)
    return keras.Model(features, probability, name=f"{name}_vectors")


def on_feature_maps(head: keras.Model, pooling: str, map_shape: tuple, name: str) -> keras.Model:
    """A head trained on pooled vectors -> the same head on feature maps, its pooling inside."""
    maps = keras.Input(map_shape, name="feature_map")
    return keras.Model(maps, head(pool_layer(pooling)(maps)), name=f"head_{name}")


def build_classifier(extractor: keras.Model, head: keras.Model, head_pooling: str, other_head: keras.Model, other_pooling: str) -> keras.Model:
    """Raw images -> {probability, other_probability, embedding}: what is saved, evaluated and served.

    head and other_head were trained on pooled vectors (build_head); each goes on the feature maps
    with its pooling inside. probability: P(second class) among the two known ones;
    other_probability: P(reject class) from the "neither" head; embedding: the pooled backbone
    features (for the embedding-distance score).
    """
    map_shape = extractor.output_shape[1:]
    images = keras.Input(extractor.input_shape[1:], name="image")
    features = extractor(images)
    outputs = {
        "probability": on_feature_maps(head, head_pooling, map_shape, "probability")(features),
        "other_probability": on_feature_maps(other_head, other_pooling, map_shape, "other_probability")(features),
        "embedding": keras.layers.GlobalAveragePooling2D(name="embedding")(features),
    }
    return keras.Model(images, outputs, name="classifier")


def trainable_classifier(extractor: keras.Model, head: keras.Model, augmentation: keras.Sequential) -> keras.Model:
    """Raw images -> augmentation -> backbone -> probability: the model fine-tuning trains."""
    images = keras.Input(extractor.input_shape[1:], name="image")
    return keras.Model(images, head(extractor(augmentation(images))), name="fine_tune")


def outputs_from_features(model: keras.Model, features: np.ndarray, averages: np.ndarray, batch_size: int) -> Outputs:
    """What the saved model answers for images whose feature maps (and their channel means, the
    embedding) are cached: its heads only, no backbone."""
    import tensorflow as tf

    def answers(head: keras.Model) -> np.ndarray:
        # One compiled step over float32 batches of the (float16, memory-mapped) maps: predict()
        # first copies the whole array into a tf.data pipeline, 2.0 to 4.4 s of MobileNetV2's
        # validation maps against 1.4 s for this (benchmarks/README.md, section 12).
        step = tf.function(lambda maps: head(maps, training=False), reduce_retracing=True)
        batches = (np.asarray(features[start : start + batch_size], dtype=np.float32) for start in range(0, len(features), batch_size))
        return np.concatenate([np.asarray(step(batch)) for batch in batches] or [np.empty((0, 1))]).ravel()

    heads = [model.get_layer(f"head_{name}") for name in ("probability", "other_probability")]
    return Outputs(*(answers(head) for head in heads), averages)
