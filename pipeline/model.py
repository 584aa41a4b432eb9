"""Backbone + head built from config: raw uint8 images in, P(second class) out.

Preprocessing lives inside the model as a layer, so a saved model takes raw images and training and
serving cannot disagree about it. The frozen backbone is run once per image and augmentation view
(`embed`); the head trains on those cached embeddings (`build_head`), then `assemble` joins them.
"""

from __future__ import annotations

import importlib

import keras
import numpy as np

from pipeline.config import AugmentConfig, BackboneConfig, HeadConfig


VARIANCE_FLOOR = 0.01  # of the mean feature variance; see build_head


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be fetched; the message says what to do."""


@keras.saving.register_keras_serializable(package="pipeline")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own keras.applications.<module>.preprocess_input, as a saveable layer."""

    def __init__(self, module: str, **kwargs):
        super().__init__(**kwargs)
        self.module = module
        self._preprocess = importlib.import_module(f"keras.applications.{module}").preprocess_input

    def call(self, images):
        return self._preprocess(keras.ops.cast(images, "float32"))

    def get_config(self):
        return {**super().get_config(), "module": self.module}


def build_backbone(spec: BackboneConfig) -> keras.Model:
    """keras.applications.<application>(include_top=False), weights as configured."""
    application = getattr(keras.applications, spec.application)
    default_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(spec.precision)  # the applications take no dtype argument
    try:
        return application(
            include_top=False,
            weights=spec.weights,
            input_shape=(spec.input_size, spec.input_size, 3),
        )
    except Exception as err:
        if spec.weights != "imagenet":
            raise
        raise WeightsUnavailable(
            f"could not download the ImageNet weights of {spec.application} ({err}).\n"
            f"Either place the file named at the end of that URL in ~/.keras/models/ "
            f"(or $KERAS_HOME/models/), or set backbones.{spec.name}.weights to the path of a "
            f"weights file, or to null for random init (the `preset=offline` config does that)."
        ) from err
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
    """Raw images -> backbone feature map, with the backbone in inference mode."""
    images = keras.Input((spec.input_size, spec.input_size, 3), name="image")
    x = BackbonePreprocess(spec.module, name="preprocess")(images)
    features = backbone(x, training=False)  # BatchNorm keeps its inference statistics
    features = keras.ops.cast(features, "float32")  # the head and the statistics stay float32 at any precision
    return keras.Model(images, features, name=f"{spec.name}_extractor")


def build_head(train_embeddings: np.ndarray, spec: HeadConfig) -> keras.Model:
    """Feature map -> P(second class).

    The pooled features are standardised with statistics of the training embeddings: backbones
    differ in feature scale by orders of magnitude (random-init ones most of all), and one learning
    rate then suits them all.
    """
    features = keras.Input(train_embeddings.shape[1:], name="features")
    pool = keras.layers.Flatten() if spec.pooling == "flatten" else keras.layers.GlobalAveragePooling2D()
    standardise = keras.layers.Normalization(axis=-1, name="standardise")
    standardise.adapt(pool(train_embeddings))
    # A feature that is constant on the training images (a dead ReLU unit) has variance 0 and would
    # be divided by ~1e-7, so a test image where it fires gets values near 1e6. Floor the variance.
    variance = keras.ops.convert_to_numpy(standardise.adapt_variance)
    standardise.adapt_variance.assign(np.maximum(variance, VARIANCE_FLOOR * variance.mean()))
    standardise.finalize_state()
    x = standardise(pool(features))
    if spec.hidden_units:
        x = keras.layers.Dense(spec.hidden_units, activation="relu")(x)
    if spec.dropout:
        x = keras.layers.Dropout(spec.dropout)(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(features, probability, name=f"head_{spec.name}")


def assemble(extractor: keras.Model, head: keras.Model, augmentation: keras.Sequential | None = None) -> keras.Model:
    """Raw images -> probability: what is saved, evaluated and served."""
    images = keras.Input(extractor.input_shape[1:], name="image")
    x = augmentation(images) if augmentation is not None else images
    return keras.Model(images, head(extractor(x)), name="classifier")


def embed(
    extractor: keras.Model,
    images: np.ndarray,
    batch_size: int,
    augmentation: keras.Sequential | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Run the frozen backbone once over images (one augmented view of them, if augmentation)."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    if augmentation is not None:
        keras.utils.set_random_seed(seed)  # each view is a different, reproducible draw
        dataset = dataset.map(lambda x: augmentation(x, training=True))
    return extractor.predict(dataset.prefetch(2), verbose=1)


def halves(classifier: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The extractor and head of a model made by `assemble`."""
    extractor = next(layer for layer in classifier.layers if layer.name.endswith("_extractor"))
    head = next(layer for layer in classifier.layers if layer.name.startswith("head_"))
    return extractor, head


class Predictor:
    """Raw images -> (P(second class), pooled embedding), the backbone run once for both.

    One compiled `tf.function` over the whole model, called per batch: `predict()` rebuilds its data
    pipeline on every call, which costs more than a small model's forward pass when serving one image.
    """

    def __init__(self, classifier: keras.Model, batch_size: int = 32):
        import tensorflow as tf

        extractor, head = halves(classifier)
        self.batch_size = batch_size

        @tf.function(reduce_retracing=True)  # one trace serves every batch size
        def step(images):
            features = extractor(images, training=False)
            return head(features, training=False), features

        self.step = step

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from pipeline.calibration import pool

        probabilities, embeddings = [], []
        for start in range(0, len(images), self.batch_size):
            p, features = self.step(images[start : start + self.batch_size])
            probabilities.append(np.asarray(p).ravel())
            embeddings.append(pool(np.asarray(features)))
        return np.concatenate(probabilities), np.concatenate(embeddings)
