"""Stage `register`: metrics/*.json + models/ + evaluation/ + embeddings/ -> the best model registered in MLflow, champion.json.

The backbone pipeline.choice picks (by a validation metric; on small data, a cross-validated one)
is logged as a pyfunc model and registered, unless it is the champion already (same code, data and config: the `fingerprint` tag). The alias `champion`
moves to it only if it beats the current champion on this same validation split beyond the noise
(the champion's score outside the challenger's 95% interval; within it, only if it is cheaper: the
comparison's rule), the champion re-scored here rather than trusting a number from another split;
otherwise it becomes the `challenger`. champion.json says which, and why.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow, which checking the model loads, starts up without chatter)

# isort: on
import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

import pipeline
from pipeline import config, tracking
from pipeline.choice import choose
from pipeline.cli import main_of
from pipeline.embeddings import Embeddings
from pipeline.io import read_json, write_json
from pipeline.metrics import binary_metrics
from pipeline.model import outputs_from_features
from pipeline.model_card import model_card
from pipeline.packaging import log_candidate
from pipeline.served import openvino_runtime
from pipeline.served.images import load_batch
from pipeline.served.schema import IMAGE_COLUMN
from pipeline.served.scores import DECISION_THRESHOLD
from pipeline.served.settings import Outputs, ServingSettings
from pipeline.trained import TrainedModel

PIPELINE = Path(pipeline.__file__).parent  # all of it: the fingerprint hashes the code


CHEAPER = 0.9  # of the champion's latency, at most: a real saving, not timing noise


def is_better(new: float, old: float, greater_is_better: bool) -> bool:
    """Strictly: on a tie the champion stays."""
    return new > old if greater_is_better else new < old


def promotion(cfg: DictConfig, challenger: dict, metric: str, old_score: float | None, champion) -> tuple[bool, str]:
    """(whether the challenger takes the alias, why), by the comparison's rule: it must beat the
    champion beyond its own 95% interval on this split. A champion's score inside that interval is
    within noise of it; then the challenger wins only if it is cheaper (at most CHEAPER of the
    champion's latency), and otherwise the champion stays."""
    if old_score is None:
        return True, "there is no champion yet"
    new, low, high = challenger[metric], challenger.get(f"{metric}_low", np.nan), challenger.get(f"{metric}_high", np.nan)
    if np.isnan(low) or np.isnan(high):
        better = is_better(new, old_score, cfg.register.greater_is_better)
        return better, f"its {metric} {new:.4g} {'beats' if better else 'does not beat'} the champion's {old_score:.4g} ({metric} has no interval)"
    interval = f"its {metric} {new:.4g} (95% interval {low:.4g} to {high:.4g}) against the champion's {old_score:.4g}"
    if not low <= old_score <= high:
        better = is_better(new, old_score, cfg.register.greater_is_better)
        return better, f"{interval}: {'better' if better else 'worse'} beyond noise"
    if "latency_ms_per_image" not in champion.tags:  # registered before versions recorded it
        return False, f"{interval}: within noise, and the champion's latency was not recorded: it stays"
    latency, old_latency = challenger["latency_ms_per_image"], float(champion.tags["latency_ms_per_image"])
    cheaper = latency <= CHEAPER * old_latency
    return cheaper, f"{interval}: within noise, and {'cheaper' if cheaper else 'not cheaper'} ({latency:.1f} ms against {old_latency:.1f} ms an image)"


def fingerprint(cfg: DictConfig, trained: TrainedModel) -> str:
    """What makes two candidates the same model: the pipeline code, the split (which lists every
    image's content hash) and the backbone's composed config."""
    digest = hashlib.sha256()
    for path in [*sorted(PIPELINE.rglob("*.py")), Path(cfg.paths.splits), trained.config_file]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Runs in a fresh interpreter outside the project, so the model uses the code it was logged with
# (its code_paths), not this checkout's pipeline/, which may have changed since.
SCORE_SCRIPT = f"""
import sys, pandas as pd, mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
images = pd.DataFrame({{"{IMAGE_COLUMN}": [open(p, "rb").read() for p in pd.read_csv(sys.argv[2]).path]}})
model.predict(images).to_csv(sys.argv[3], index=False)
"""


def score_on_val(model_uri: str, cfg: DictConfig, splits: pd.DataFrame) -> float:
    """A registered model, scored the way evaluate scores candidates, on this val split."""
    val = splits[splits.split == "val"]
    with tempfile.TemporaryDirectory() as tmp:
        val.assign(path=[str(Path(p).resolve()) for p in val.path]).to_csv(f"{tmp}/val.csv", index=False)
        subprocess.run([sys.executable, "-c", SCORE_SCRIPT, model_uri, f"{tmp}/val.csv", f"{tmp}/out.csv"], cwd=tmp, check=True)
        predictions = pd.read_csv(f"{tmp}/out.csv")
    y_true = (val.label == cfg.data.classes[1]).to_numpy(dtype=int)
    return binary_metrics(y_true, predictions[f"p_{cfg.data.classes[1]}"].to_numpy(), "val")[cfg.register.metric]


def evaluated_outputs(cfg: DictConfig, model, names: list[str], images: np.ndarray) -> Outputs:
    """The answers evaluate measured for these splits' images (in that order): the Keras heads on the
    embed stage's cached feature maps, or, for a fine-tuned model, which evaluate runs whole, Keras' whole model."""
    if cfg.train.fine_tune_layers > 0:
        from pipeline.served.keras_runtime import Predictor

        return Predictor(model)(images)
    embeddings = Embeddings.load(Path(cfg.paths.embeddings) / cfg.backbone.name)
    found = [outputs_from_features(model, embeddings.features[name], embeddings.pooled(name, "avg"), cfg.train.extract_batch_size) for name in names]
    return Outputs.from_batches([asdict(outputs) for outputs in found])


def choose_runtime(
    cfg: DictConfig, trained: TrainedModel, settings: ServingSettings, splits: pd.DataFrame, ir_dir: Path
) -> tuple[ServingSettings, dict[str, openvino_runtime.Agreement]]:
    """(the settings with the runtime the served model will use, each precision tried -> its agreement with Keras).

    With register.runtime openvino: the network is exported to ir_dir and run over every validation
    image (known classes and reject class) at each configured precision in turn, against the answers
    evaluate measured (Keras' heads on the cached feature maps, which evaluate checked against the
    whole Keras model): the served answers must be the ones the metrics describe, and Keras need not
    run the backbone over them again (40 s of MobileNetV2). The first precision whose answers flip at
    most register.max_flip_rate of the time is used.
    """
    if cfg.register.runtime == "keras":
        return settings, {}
    model = trained.load_model()
    ir = openvino_runtime.export(model, ir_dir)
    names = ["val", f"{cfg.data.reject_class}_val"]
    val = pd.concat([splits[splits.split == name] for name in names])  # the order of the cached maps
    images = load_batch(val.path, settings.input_size, settings.max_pixels, source_size=settings.view_sizes[0])
    reference = evaluated_outputs(cfg, model, names, images)
    checks = {}
    for precision in cfg.register.openvino_precisions:
        found = checks[precision] = openvino_runtime.agreement(reference, openvino_runtime.OpenVINOPredictor(ir, precision)(images), settings)
        print(
            f"register: OpenVINO {precision} against the evaluated Keras answers on {found.images} validation images: probabilities within "
            f"{found.max_probability_difference:.2g}, neither score within {found.max_neither_score_difference:.2g}, "
            f"{found.flipped_answers} answers flipped"
        )
        if found.flip_rate <= cfg.register.max_flip_rate:
            return replace(settings, runtime="openvino", openvino_precision=precision), checks
    print(f"register: OpenVINO flips more than {cfg.register.max_flip_rate:.1%} of the answers at every precision; Keras serves")
    return settings, checks


def log_mlflow_evaluation(cfg: DictConfig, predictions_csv: Path, model_id: str) -> None:
    """evaluate's answers on the test images of the known classes, through mlflow.models.evaluate, into
    the active run and the logged model: MLflow's own classifier metrics (accuracy_score, f1_score, the
    confusion counts) and its confusion matrix in the run's and the model version's evaluation views.
    evaluate's metrics stay the source of truth; these are the same answers counted by MLflow (a test
    checks they agree). Static answers carry no probabilities, so MLflow draws no ROC curve here:
    evaluate's plots have it."""
    rows = pd.read_csv(predictions_csv)
    known = rows[rows.label.isin(cfg.data.classes)]
    answers = pd.DataFrame({
        "label": (known.label == cfg.data.classes[1]).astype(int),  # 1: the second class, as the metrics count it
        "prediction": (known.p_positive >= DECISION_THRESHOLD).astype(int),
    })
    mlflow.models.evaluate(
        data=answers, targets="label", predictions="prediction", model_type="classifier", model_id=model_id,
        evaluator_config={"pos_label": 1, "log_model_explainability": False},
    )


def current_champion(client: MlflowClient, cfg: DictConfig):
    """The version the champion alias names now, or None before the first registration."""
    try:
        return client.get_model_version_by_alias(cfg.mlflow.registered_model, cfg.mlflow.champion_alias)
    except mlflow.exceptions.MlflowException:
        return None


def split_digest(cfg: DictConfig) -> str:
    return hashlib.sha256(Path(cfg.paths.splits).read_bytes()).hexdigest()


def champion_score(client: MlflowClient, cfg: DictConfig, champion, splits: pd.DataFrame, metric: str) -> tuple[float | None, str]:
    """(the champion's score on this split, the metric it is in); None if there is no champion or it
    cannot be scored. The score recorded when it was registered if that was on this very split, else
    its register.metric scored again on this val split (a cross-validated score cannot be: it refits heads)."""
    if champion is None:
        return None, metric
    recorded = champion.tags.get(metric)
    if recorded is not None and champion.tags.get("split_sha256") == split_digest(cfg):
        return float(recorded), metric  # the same images: scoring again would only run the backbone over them again
    try:
        return score_on_val(client.get_model_version_download_uri(champion.name, champion.version), cfg, splits), cfg.register.metric
    except subprocess.CalledProcessError:
        print(f"register: champion v{champion.version} could not be scored (see above); it will be replaced")
        return None, metric


def run(cfg: DictConfig) -> dict:
    choice = choose(cfg)
    best, scores = choice.backbone, choice.scores
    cfg = config.validate(OmegaConf.to_container(cfg), best)
    trained = TrainedModel(Path(cfg.paths.models) / best)
    splits = pd.read_csv(cfg.paths.splits)
    serving_dir = Path(cfg.paths.evaluation) / best / "serving"
    example = Path(splits[splits.split == "val"].path.iloc[0]).read_bytes()

    tracking.setup(cfg)
    client = MlflowClient()
    name, alias = cfg.mlflow.registered_model, cfg.mlflow.champion_alias
    champion = current_champion(client, cfg)
    summary = {"registered_model": name, "backbone": best, "metric": choice.metric, "scores": scores, "reason": choice.reason}
    candidate = fingerprint(cfg, trained)
    if champion is not None and champion.tags.get("fingerprint") == candidate:
        summary.update(version=None, previous_champion=int(champion.version), previous_champion_score=None, champion=int(champion.version))
        write_json(cfg.paths.champion, summary)
        print(f"register: {best} is champion v{champion.version} already (same code, data and config); nothing registered")
        return summary
    old_score, metric = champion_score(client, cfg, champion, splits, choice.metric)
    best_metrics = read_json(config.metrics_file(cfg, best))  # its score in `metric`, the one the champion's is in

    with tempfile.TemporaryDirectory() as ir_dir:
        settings, checks = choose_runtime(cfg, trained, ServingSettings.load(serving_dir), splits, Path(ir_dir))
        logged = log_candidate(cfg, trained, settings, Path(ir_dir), example)
    new_version = logged.registered_model_version
    tags = {
        **tracking.run_tags(cfg),
        **tracking.weights_tags(trained.handover().weights),
        # Both scores, so that a later candidate on this split compares with a recorded one either way.
        **{key: best_metrics[key] for key in {choice.metric, cfg.register.metric, "latency_ms_per_image"}},
        # How far this version's OpenVINO network agreed with its Keras one; the card says it in words.
        **{f"openvino_{precision}_{key}": value for precision, found in checks.items() for key, value in asdict(found).items()},
        "runtime": settings.runtime_label,
        "fingerprint": candidate,
        "split_sha256": split_digest(cfg),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, new_version, key, str(value))
    card = model_card(cfg, int(new_version), splits, settings, checks)
    client.update_model_version(name, new_version, description=card)
    with tracking.backbone_run(cfg, trained.handover().run_id):
        mlflow.log_text(card, f"model_card_v{new_version}.md")
        log_mlflow_evaluation(cfg, Path(cfg.paths.evaluation) / best / "predictions.csv", logged.model_id)
    promote, why = promotion(cfg, best_metrics, metric, old_score, champion)
    # Last step: an alias only ever names a whole model. A version that does not win is the challenger.
    client.set_registered_model_alias(name, alias if promote else cfg.mlflow.challenger_alias, new_version)

    summary.update(
        version=int(new_version),
        previous_champion=int(champion.version) if champion else None,
        previous_champion_score=old_score,
        champion=int(new_version) if promote else int(champion.version),
        interval=[best_metrics.get(f"{metric}_low"), best_metrics.get(f"{metric}_high")],
        promotion=why,
    )
    write_json(cfg.paths.champion, summary)
    verdict = f"is the new champion: {why}" if promote else f"is the challenger to champion v{champion.version}: {why}"
    print(f"register: {choice.reason} -> {name} v{new_version}, {verdict}")
    return summary


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
