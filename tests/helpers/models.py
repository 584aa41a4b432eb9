"""Small backbone and head configs the model tests build networks from."""

from pipeline.config import BackboneConfig, HeadConfig

GAP = HeadConfig("gap", "avg", 0, 0.0)


def vgg16(weights, precision="float32"):
    return BackboneConfig("vgg16", "VGG16", "vgg16", input_size=32, min_input_size=32, weights=weights, precision=precision,
                          weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
