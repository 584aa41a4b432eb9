"""models/<backbone>/, train's hand-off -> evaluate, compare, register: the saved classifier, its history, the
training embeddings' statistics, the MLflow run and weights it came from, and the config it was trained with."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pipeline.io import read_json, write_json
from pipeline.served.scores import EmbeddingStats
from pipeline.weights import WeightsSource


@dataclass(frozen=True)
class Handover:
    """What the rest of the pipeline needs to know of the training run (run.json)."""

    run_id: str  # the backbone's MLflow run: evaluate and register log into the same one
    backbone: str
    weights: WeightsSource  # the weights file the backbone was built from (path and sha256)
    source_size: int | None  # the team images' resolution, when below the input size (Embeddings.source_size)


@dataclass(frozen=True)
class TrainedModel:
    folder: Path  # models/<backbone>/

    MODEL, HISTORY, STATS, RUN, CONFIG = "model.keras", "history.csv", "embedding_stats.npz", "run.json", "config.yaml"

    @property
    def model_file(self) -> Path:
        return self.folder / self.MODEL

    @property
    def config_file(self) -> Path:
        return self.folder / self.CONFIG

    def load_model(self):
        import keras

        import pipeline.served.keras_runtime  # noqa: F401  (registers the preprocessing layer the saved model holds)

        return keras.saving.load_model(self.model_file)

    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / self.HISTORY)

    def embedding_stats(self) -> EmbeddingStats:
        return EmbeddingStats.load(self.folder / self.STATS)

    def handover(self) -> Handover:
        fields = read_json(self.folder / self.RUN)
        return Handover(**{**fields, "weights": WeightsSource(**fields["weights"])})

    @classmethod
    def write(cls, folder: Path, model, history: pd.DataFrame, stats: EmbeddingStats, config_yaml: str, handover: Handover) -> TrainedModel:
        """Everything is written beside the final folder, then swapped in: a killed run leaves no half a model."""
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        model.save(partial / cls.MODEL)
        history.to_csv(partial / cls.HISTORY, index=False)
        stats.save(partial / cls.STATS)
        (partial / cls.CONFIG).write_text(config_yaml)
        write_json(partial / cls.RUN, asdict(handover))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        return cls(folder)
