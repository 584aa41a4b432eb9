"""Stage `register`: metrics/*.json + models/ + evaluation/ -> the best model registered in MLflow, champion.json.

The backbone pipeline.choice picks (by a validation metric; on small data, a cross-validated one)
is logged as a pyfunc model and registered, unless it is the champion already (same code, data and config: the `fingerprint` tag). The alias `champion`
moves to it only if it scores better than the current champion on this same validation split (the
champion is re-scored here rather than trusting a number from another split); otherwise it becomes
the `challenger`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

# isort: off
from pipeline import quiet_tensorflow  # noqa: F401  (first: TensorFlow, which checking the model loads, starts up without chatter)

# isort: on
import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from omegaconf import DictConfig, OmegaConf

import pipeline
from pipeline import config, tracking
from pipeline.choice import choose
from pipeline.cli import main_of
from pipeline.io import read_json, write_json
from pipeline.metrics import binary_metrics
from pipeline.served import openvino_runtime
from pipeline.served.images import load_batch
from pipeline.served.pyfunc import ImageClassifier
from pipeline.served.schema import IMAGE_COLUMN, ON_BAD_IMAGE, REFUSED, verdict_columns
from pipeline.served.settings import ServingSettings
from pipeline.trained import TrainedModel

PIPELINE = Path(pipeline.__file__).parent
SERVING_PACKAGES = ("keras", "openvino", "pillow", "numpy", "pandas", "scikit-learn")  # and TensorFlow: see serving_requirements


def serving_requirements() -> list[str]:
    """The served model's pip requirements, pinned as installed here, TensorFlow under the name of the
    distribution actually installed (tensorflow-cpu, or tensorflow where that has no wheel or on a GPU host)."""
    from importlib.metadata import PackageNotFoundError

    try:
        tensorflow = f"tensorflow-cpu=={version('tensorflow-cpu')}"
    except PackageNotFoundError:
        tensorflow = f"tensorflow=={version('tensorflow')}"
    return [tensorflow, *(f"{name}=={version(name)}" for name in SERVING_PACKAGES)]


def is_better(new: float, old: float, greater_is_better: bool) -> bool:
    """Strictly: on a tie the champion stays."""
    return new > old if greater_is_better else new < old


def fingerprint(cfg: DictConfig, trained: TrainedModel) -> str:
    """What makes two candidates the same model: the pipeline code, the split (which lists every
    image's content hash) and the backbone's composed config."""
    digest = hashlib.sha256()
    for path in [*sorted(PIPELINE.rglob("*.py")), Path(cfg.paths.splits), trained.config_file]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def signature(classes: list[str]) -> ModelSignature:
    outputs = [ColSpec(kind, name, required=name != REFUSED) for name, kind in verdict_columns(classes).items()]  # REFUSED: only with on_bad_image=report
    params = ParamSchema([ParamSpec(ON_BAD_IMAGE, "string", "fail")])
    return ModelSignature(inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]), outputs=Schema(outputs), params=params)


def served_code(folder: Path) -> Path:
    """folder/pipeline: the package with only served/ in it, what the model ships as its code_paths.

    Loaded in a fresh process, the model then finds no other pipeline/ module: the served box stays closed.
    """
    package = folder / "pipeline"
    shutil.copytree(PIPELINE / "served", package / "served", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text('"""The served part of the pipeline package, as a registered model ships it."""\n')
    return package


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


def choose_runtime(
    cfg: DictConfig, trained: TrainedModel, settings: ServingSettings, splits: pd.DataFrame, ir_dir: Path
) -> tuple[ServingSettings, dict[str, openvino_runtime.Agreement]]:
    """(the settings with the runtime the served model will use, each precision tried -> its agreement with Keras).

    With register.runtime openvino: the network is exported to ir_dir and run over every validation
    image (known classes and reject class) beside Keras, the reference, at each configured precision
    in turn; the first whose answers flip at most register.max_flip_rate of the time is used.
    """
    if cfg.register.runtime == "keras":
        return settings, {}
    from pipeline.served.keras_runtime import Predictor

    model = trained.load_model()
    ir = openvino_runtime.export(model, ir_dir)
    val = splits[splits.split.isin(["val", f"{cfg.data.reject_class}_val"])]
    images = load_batch(val.path, settings.input_size, settings.max_pixels, source_size=settings.view_sizes[0])
    reference = Predictor(model)(images)
    checks = {}
    for precision in cfg.register.openvino_precisions:
        found = checks[precision] = openvino_runtime.agreement(reference, openvino_runtime.OpenVINOPredictor(ir, precision)(images), settings)
        print(
            f"register: OpenVINO {precision} against Keras on {found.images} validation images: probabilities within "
            f"{found.max_probability_difference:.2g}, neither score within {found.max_neither_score_difference:.2g}, "
            f"{found.flipped_answers} answers flipped"
        )
        if found.flip_rate <= cfg.register.max_flip_rate:
            return replace(settings, runtime="openvino", openvino_precision=precision), checks
    print(f"register: OpenVINO flips more than {cfg.register.max_flip_rate:.1%} of the answers at every precision; Keras serves")
    return settings, checks


def log_candidate(cfg: DictConfig, trained: TrainedModel, settings: ServingSettings, ir_dir: Path, example: bytes):
    """Log the candidate as a pyfunc model in its backbone's run and register a new version."""
    with tempfile.TemporaryDirectory() as tmp:
        settings.save(f"{tmp}/serving")  # as evaluate fitted it, with the runtime chosen here
        artifacts = {"keras_model": str(trained.model_file), "serving_settings": f"{tmp}/serving", "config": str(trained.config_file)}
        if settings.runtime == "openvino":
            artifacts["openvino_model"] = str(ir_dir)
        with tracking.backbone_run(cfg, trained.handover().run_id):
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=ImageClassifier(),
                artifacts=artifacts,
                code_paths=[str(served_code(Path(tmp)))],
                signature=signature(list(cfg.data.classes)),
                input_example=pd.DataFrame({IMAGE_COLUMN: [example]}),
                pip_requirements=serving_requirements(),
                registered_model_name=cfg.mlflow.registered_model,
            )


def runtime_lines(cfg: DictConfig, settings: ServingSettings, checks: dict[str, openvino_runtime.Agreement]) -> str:
    """The model card's runtime section: what computes the answers and how far OpenVINO agreed with Keras."""
    used = f"OpenVINO at {settings.openvino_precision}" if settings.runtime == "openvino" else "Keras (TensorFlow)"
    lines = [f"- Answers computed by {used} (`model_runtime` in every answer); Keras is the reference."]
    for precision, found in checks.items():
        lines.append(
            f"- OpenVINO {precision} against Keras on {found.images} validation images: probabilities within "
            f"{found.max_probability_difference:.2g}, \"neither\" score within {found.max_neither_score_difference:.2g}, "
            f"{found.flipped_answers} answers flipped (at most {cfg.register.max_flip_rate:.1%} allowed)."
        )
    return "\n".join(lines)


def recipe_lines(cfg: DictConfig, rows: pd.DataFrame) -> str:
    """The model card's recipe section: what was chosen, and its field figures beside the plain baseline's (compare's rows)."""
    head, neither = cfg.head, cfg.neither_head
    lines = [
        f"- Head `{head.name}` ({head.fit}), \"neither\" head fitted {neither.fit}, augmentation `{cfg.augment.name}`,"
        f" photos brought to the input size `{cfg.data.photo_resize}` (data.photo_resize); see benchmarks/README.md, \"Real photos: the ablation\".",
        "",
        "| real photos | binary (likelier class) | own class | \"neither\" on other | three-way (95% interval) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for recipe, name in (("pipeline", "this model"), ("baseline", "plain baseline")):
        r = rows.loc[recipe]
        lines.append(
            f"| {name} | {r.field_accuracy:.3f} | {r.field_known_answered_right:.3f} | {r.field_neither_rate_on_other:.3f} | "
            f"{r.field_three_way_accuracy:.3f} ({r.field_three_way_accuracy_low:.3f} to {r.field_three_way_accuracy_high:.3f}) |"
        )
    return "\n".join(lines)


def model_card(cfg: DictConfig, version: int, splits: pd.DataFrame, settings: ServingSettings, checks: dict) -> str:
    """What a user of this version should know, in markdown: data, metrics with intervals, limits."""
    metrics = read_json(config.metrics_file(cfg, cfg.backbone.name))
    table = pd.read_csv(Path(cfg.paths.comparison) / "comparison.csv")
    rows = table[table.backbone == cfg.backbone.name].set_index("recipe")
    comparison = rows.loc["pipeline"]
    sizes = splits.split.value_counts().to_dict()
    spec = cfg.backbone
    weights = TrainedModel(Path(cfg.paths.models) / spec.name).handover().weights
    warning = (
        ""
        if weights.meaningful
        else ("\n> **Demo model: random-init weights.** Its answers are not meaningful; it only shows that the pipeline runs.\n")
    )
    field = (
        f"- Real photos (`{cfg.paths.field}`, {metrics['field_images']:.0f} photos, never trained or tuned on): "
        f"airplane/automobile photos answered with their own class {metrics['field_known_answered_right']:.0%}, "
        f'`{cfg.data.reject_class}/` photos answered "neither" {metrics["field_neither_rate_on_other"]:.0%}, '
        f"three-way accuracy {metrics['field_three_way_accuracy']:.3f}."
        if "field_images" in metrics
        else "- Real photos: no field set was scored."
    )
    candidates = ", ".join(
        f"`{k.rpartition('val_neither_auroc_')[2]}` (AUROC {v:.3f})" for k, v in metrics.items() if k.startswith("val_neither_auroc_")
    )

    def interval(metric, figures=comparison):
        return f"{figures[metric]:.3f} (95% CI {figures[metric + '_low']:.3f} to {figures[metric + '_high']:.3f})"

    sureness = (
        f"- How sure: these rest on {comparison['test_images']:.0f} test images; the accuracy is known to about "
        f"+-{(comparison['accuracy_high'] - comparison['accuracy_low']) / 2:.3f}."
    )
    if "cv_accuracy" in metrics:
        sureness += (
            f" The data is small, so it was chosen on figures cross-validated over its {metrics['cv_images']:.0f} train+val"
            f" images ({metrics['cv_folds']:.0f} folds): accuracy {interval('cv_accuracy', metrics)}, ROC AUC {interval('cv_roc_auc', metrics)}."
        )

    return f"""# {cfg.mlflow.registered_model} v{version}

Tells **{cfg.data.classes[0]}**, **{cfg.data.classes[1]}** or **neither** from a photo.
{warning}
## Model
- Backbone: {spec.application}, input {spec.input_size}x{spec.input_size}; head `{cfg.head.name}`; augmentation `{cfg.augment.name}`.
- Weights: {weights.describe()}{f"; file `{weights.path}`, sha256 `{weights.sha256}`" if weights.path else ""}.
- Git commit `{tracking.git_commit()}`; data version (DVC) `{tracking.data_version()}`.
- Split sizes: {", ".join(f"{k} {v}" for k, v in sorted(sizes.items()))}.

## Metrics (test split)
- Accuracy {interval("accuracy")}; ROC AUC {interval("roc_auc")}.
- "Neither" AUROC {interval("neither_auroc")}; false-positive rate at 95% true-positive rate {metrics["test_neither_fpr_at_95_tpr"]:.3f}.
- Three-way accuracy {metrics["test_three_way_accuracy"]:.3f}; accuracy on accepted images {metrics["test_accepted_accuracy"]:.3f}.
- Expected calibration error {metrics["test_ece"]:.3f} (raw {metrics["test_ece_raw"]:.3f}); latency {metrics["latency_ms_per_image"]:.1f} ms per image on the build machine.
{field}
{sureness}

## Recipe
{recipe_lines(cfg, rows)}

## Runtime
{runtime_lines(cfg, settings, checks)}

## The "neither" answer
Score `{settings.neither_score}`, threshold {settings.reject_threshold:.4g}: an image scoring above it is answered
"neither". Chosen on validation among {candidates}. The threshold lets {settings.accept_rate:.0%} of {cfg.data.classes[0]}
and {cfg.data.classes[1]} validation images through; on the test split it flagged {metrics["test_neither_rate_on_other"]:.0%} of
`{cfg.data.reject_class}/` images. Probabilities are temperature-scaled (T = {settings.temperature:.3g}, fitted on validation).

## Known limits
- Trained on the images in `data/` only: what is unlike them (drawings, unusual viewpoints, other vehicles such as
  trucks or ships) may be answered with confidence, and "neither" only knows the kinds of image in `{cfg.data.reject_class}/`.
- The team dataset is 32x32 CIFAR-10, upscaled; a photo reaches {spec.input_size} pixels a side as `data.photo_resize`
  says ({cfg.data.photo_resize}: "both" answers with the mean over the photo brought down to the training resolution and resized straight).
- With random-init weights the scores show that the pipeline works, not how good a backbone is.
"""


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
    best_metrics = read_json(config.metrics_file(cfg, best))
    new_score = best_metrics[metric]  # in the metric the champion's score is in

    with tempfile.TemporaryDirectory() as ir_dir:
        settings, checks = choose_runtime(cfg, trained, ServingSettings.load(serving_dir), splits, Path(ir_dir))
        logged = log_candidate(cfg, trained, settings, Path(ir_dir), example)
    new_version = logged.registered_model_version
    tags = {
        **tracking.run_tags(cfg),
        **tracking.weights_tags(trained.handover().weights),
        # Both scores, so that a later candidate on this split compares with a recorded one either way.
        **{key: best_metrics[key] for key in {choice.metric, cfg.register.metric}},
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
    promote = old_score is None or is_better(new_score, old_score, cfg.register.greater_is_better)
    # Last step: an alias only ever names a whole model. A version that does not win is the challenger.
    client.set_registered_model_alias(name, alias if promote else cfg.mlflow.challenger_alias, new_version)

    summary.update(
        version=int(new_version),
        previous_champion=int(champion.version) if champion else None,
        previous_champion_score=old_score,
        champion=int(new_version) if promote else int(champion.version),
    )
    write_json(cfg.paths.champion, summary)
    verdict = (
        "is the new champion"
        if promote
        else f"is the challenger: its {metric} {new_score:.4g} does not beat champion v{champion.version}'s {old_score:.4g}"
    )
    print(f"register: {choice.reason} -> {name} v{new_version}, {verdict}")
    return summary


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
