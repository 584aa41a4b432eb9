"""End to end, the README's "Your own photos" steps on a fresh clone: ../shared/photos (93 real photos)
as a user's own, offline with the real MobileNetV2 weights; the figures are cross-validated (small
data) and the champion is chosen on them."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from helpers.project import MODEL, SHARED, client_for, clone, commit, sh

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (SHARED / "dvc-storage").is_dir(), reason="needs ../shared/dvc-storage")]


@pytest.fixture(scope="module")
def own_photos_run(tmp_path_factory):
    project = clone(tmp_path_factory.mktemp("own") / "project")
    sh("dvc", "pull", "-q", "weights.dvc", cwd=project)  # the team data is not needed for your own photos
    for folder in ("airplane", "automobile", "other"):  # README: mkdir -p my_photos/...; then copy your photos in
        shutil.copytree(SHARED / "photos" / folder, project / "my_photos" / folder)
    sh("dvc", "add", "my_photos", cwd=project)
    sh("git", "add", "my_photos.dvc", ".gitignore", cwd=project)
    commit(project, "Our own photos")
    # The README's command, shrunk to keep CI short: one repeat of the 5 folds, two backbones (a choice).
    # Embedded on Spark (local[2]): the full-size photos are decoded on its executors, and the champion
    # is registered from that cache (tests/test_embed_spark.py checks it is the local engine's).
    readme = ["dvc", "exp", "run", "-S", "paths.data=my_photos", "-S", "preset=offline"]
    shrunk = ["-S", "cross_validation.repeats=1", "-S", "compare=[mobilenet_v2,vgg16]", "-S", "embed.engine=spark"]
    output = sh(*readme, *shrunk, cwd=project, timeout=1500)
    return project, output


def test_own_photos_are_cross_validated_with_intervals(own_photos_run):
    project, _ = own_photos_run
    metrics = json.loads((project / "metrics/mobilenet_v2.json").read_text())
    # 93 photos: 15% each to test and val per folder, the rest train; train+val is what is cross-validated.
    assert 70 <= metrics["cv_images"] <= 85 and metrics["cv_folds"] == 5
    for name in ("cv_accuracy", "cv_roc_auc"):
        assert 0 <= metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"] <= 1, name
        assert metrics[f"{name}_high"] - metrics[f"{name}_low"] > 0, name  # a real interval: few photos, real doubt
    # Real ImageNet features tell airplanes from cars: far above chance even on a few dozen photos.
    assert metrics["cv_roc_auc"] > 0.8

    comparison = (project / "artifacts/comparison/comparison.md").read_text()
    assert "cross-validated accuracy" in comparison
    assert re.search(r"rest on \d+ test images", comparison) and re.search(rf"cross-validated over the {metrics['cv_images']:.0f} train\+val images", comparison)


def test_the_champion_is_chosen_on_the_cross_validated_scores(own_photos_run):
    project, output = own_photos_run
    champion = json.loads((project / "artifacts/register/champion.json").read_text())
    assert champion["metric"] == "cv_roc_auc"
    scores = {name: json.loads((project / f"metrics/{name}.json").read_text())["cv_roc_auc"] for name in champion["scores"]}
    assert champion["scores"] == pytest.approx(scores)
    assert champion["backbone"] in champion["reason"] and "Champion:" in (project / "artifacts/comparison/comparison.md").read_text()

    version = client_for(project).get_model_version(MODEL, champion["champion"])
    assert float(version.tags["cv_roc_auc"]) == pytest.approx(scores[champion["backbone"]])
    assert "cross-validated over" in version.description  # the model card says what the figures rest on
