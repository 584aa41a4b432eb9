"""A main job's model and cache -> seconds for its head over a split's cached feature maps: Keras' predict() against one compiled step per batch (model.outputs_from_features).

Run by hand from the project root after the offline main job: python benchmarks/bench_cached_heads.py [backbone] [split]
"""

import os
import sys
import time
from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow starts up without chatter)

# isort: on
import numpy as np

from pipeline.embeddings import Embeddings
from pipeline.model import outputs_from_features
from pipeline.trained import TrainedModel


def main() -> None:
    backbone = sys.argv[1] if len(sys.argv) > 1 else "mobilenet_v2"
    split = sys.argv[2] if len(sys.argv) > 2 else "val"
    model = TrainedModel(Path("artifacts/models") / backbone).load_model()
    embeddings = Embeddings.load(Path("artifacts/embeddings") / backbone)
    maps, head = embeddings.features[split], model.get_layer("head_probability")
    print(f"{backbone} {split}: maps {maps.shape} {maps.dtype}")
    for _ in range(2):
        start = time.perf_counter()
        predicted = head.predict(maps, batch_size=32, verbose=0).ravel()
        middle = time.perf_counter()
        stepped = outputs_from_features(model, maps, embeddings.pooled(split, "avg"), 32).probability
        end = time.perf_counter()
        print(f"  predict() {middle - start:5.2f} s, compiled step {end - middle:5.2f} s, largest difference {np.abs(predicted - stepped).max():.1e}"
              f"  load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
