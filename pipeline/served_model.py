"""An alias: versions registered before the served code moved to pipeline/served/ pickled pipeline.served_model.ImageClassifier."""

from pipeline.served.pyfunc import ImageClassifier  # noqa: F401
