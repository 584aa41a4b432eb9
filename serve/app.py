"""Streamlit page: photos picked, dropped or taken with the camera, then "Process" -> a grid of answers, each with
where the model looked (Grad-CAM) and a "that's wrong" button that keeps the photo for the next training run;
and a "Label audit" tab: the team images the audit stage found likeliest mislabelled, each to review.

Run: streamlit run serve/app.py. With SERVING_URL set (the /invocations URL) that endpoint answers;
otherwise the champion, loaded here, does. The heatmaps come from the champion's Keras network,
loaded here either way. Corrected photos go to REVIEW_DIR (default: review/ in the project), laid out
as data/ is; the README says how they enter the next training run. The audit's list is AUDIT_FILE
(default: the audit stage's label_issues.csv in the project).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from pipeline.served.images import ImageError, decode, load_image
from pipeline.served.schema import IMAGE_COLUMN
from pipeline.store import project_path
from serve import ROOT, alias_seconds, by_version, confidence, demo_warning, model_uri, reason, use_tracking_store

PREVIEW_PIXELS = 640
COLUMNS = 3  # photos per row of the grid
AUDIT_SHOWN = 20  # of the audit's list, likeliest first: a sitting's worth of review


def champion():
    """The registered champion: (its pyfunc model, its Keras network). An alias is followed: resolved
    again at most every SERVE_ALIAS_SECONDS, and a version it moves to is loaded once, then kept."""
    return loaded(current_uri())


@st.cache_data(ttl=alias_seconds() or None, show_spinner=False)
def current_uri() -> str:
    """model_uri(), an alias in it resolved to the version it names now."""
    use_tracking_store()
    followed = by_version(model_uri()) if alias_seconds() > 0 else None
    return followed[0] if followed else model_uri()


@st.cache_resource(show_spinner="Loading the model...", max_entries=2)  # the one serving, and the one it moves to
def loaded(uri: str):
    """A model, loaded once per server process and URI: (its pyfunc model, its Keras network).

    Fetched once into a local folder and loaded from there: the Keras network is one of its
    artifacts, whichever runtime serves and whatever version of our code the model was logged with.
    """
    import keras
    import mlflow.artifacts
    import mlflow.pyfunc

    import pipeline.served.keras_runtime  # noqa: F401  (registers the custom preprocessing layer)

    use_tracking_store()
    folder = mlflow.artifacts.download_artifacts(uri)
    return mlflow.pyfunc.load_model(folder), keras.saving.load_model(Path(folder) / "artifacts" / "model.keras")


def settings():
    return champion()[0].unwrap_python_model().settings


def review_dir() -> Path:
    return Path(os.environ.get("REVIEW_DIR") or ROOT / "review")


def classify(data: bytes) -> dict:
    """Image file bytes -> the verdict row; raises with a readable message if the file is refused."""
    url = os.environ.get("SERVING_URL")
    if url:
        from serve.client import predict

        return predict(url, [data])[0]
    return champion()[0].predict(pd.DataFrame({IMAGE_COLUMN: [data]})).iloc[0].to_dict()


def preview(data: bytes):
    """The photo as the model sees it (upright, RGB), small enough to show; the pipeline's loader decodes it."""
    image = decode(data, draft_size=PREVIEW_PIXELS)
    image.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
    return image


def where_it_looked(data: bytes, photo, answer: str):
    """The photo (its preview) with the Grad-CAM heatmap of its answer laid over it."""
    from pipeline import gradcam

    served = settings()
    image = load_image(data, served.input_size, served.max_pixels, served.view_sizes[-1])  # the sharpest view the model answers on
    heatmap = gradcam.heatmaps(champion()[1], image[None], [answer], served.classes)[0]
    return gradcam.overlay(photo, heatmap)


def folder_of(label: str) -> str:
    """A label a person picks -> its folder in data/ (and in the review folder): "neither" is the reject class's."""
    return settings().reject_class if label == "neither" else label


def keep_for_review(data: bytes, label: str):
    """Store the photo under review/<label>/, once: named by its content, as pixels only (PNG, no
    file name, no EXIF or other metadata of the person's). Pressed again with another label, it moves."""
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    for earlier in review_dir().glob(f"*/{name}"):
        earlier.unlink()
    target = review_dir() / folder_of(label) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    decode(data).save(target)
    return target


def audit_file() -> Path:
    return Path(os.environ.get("AUDIT_FILE") or project_path("audit") / "label_issues.csv")


def remove_from_data(path: str) -> None:
    """Note a team image a person relabelled in the audit: its corrected copy is in review/, and the
    original must leave data/ when the copies go in (README, "Label audit"), or it is there twice."""
    listed = review_dir() / "remove_from_data.txt"
    lines = listed.read_text().splitlines() if listed.exists() else []
    if path not in lines:
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("".join(f"{line}\n" for line in [*lines, path]))


def label_of(folder: str) -> str:
    """A data/ folder -> the label a person picks ("neither" for the reject class's)."""
    return "neither" if folder == settings().reject_class else folder


def show_issue(row, key: int) -> None:
    """One image of the audit's list: the image, its label and the likelier one, and a button to relabel it."""
    if not (ROOT / row.path).is_file():
        st.caption(f"{row.path}: no longer in the data (moved or relabelled since the audit ran).")
        return
    image, text = st.columns([1, 3])
    data = (ROOT / row.path).read_bytes()
    image.image(preview(data), width=128)
    text.markdown(f"**{row.path}** ({row.split}): labelled **{label_of(row.label)}**, likely **{label_of(row.suggested)}** "
                  f"({row.suggested_probability:.0%} out of fold)")
    choices = [*settings().classes, "neither"]
    likelier = label_of(row.suggested)
    label = text.radio("What does it really show?", choices, index=choices.index(likelier) if likelier in choices else 0, key=f"audit-label-{key}", horizontal=True)
    if text.button("Relabel for review", key=f"audit-{key}"):
        if label == label_of(row.label):
            text.info("That is its label already: nothing to do.")
        else:
            keep_for_review(data, label)
            remove_from_data(row.path)
            text.success(f"Kept for the next training run as {label}; {row.path} is listed in remove_from_data.txt.")


def show_audit() -> None:
    """The audit tab: the likeliest label errors, or what to run to have them."""
    path = audit_file()
    if not path.exists():
        st.info(f"No label audit yet: `dvc repro audit` writes it to {path}.")
        return
    issues = pd.read_csv(path)
    st.caption(f"{len(issues)} team images whose labels the audit doubts (cleanlab, out-of-fold), likeliest first; "
               f"the first {min(len(issues), AUDIT_SHOWN)} here. Relabel those that are wrong; leave those that are right.")
    for key, row in enumerate(issues.head(AUDIT_SHOWN).itertuples()):
        show_issue(row, key)


def waiting() -> dict[str, int]:
    """Photos in the review folder, per folder."""
    root = review_dir()
    return {folder.name: sum(1 for _ in folder.glob("*.png")) for folder in sorted(root.iterdir()) if folder.is_dir()} if root.is_dir() else {}


def process(photos: list[tuple[str, bytes]]) -> list[dict]:
    """(name, bytes) of each photo -> what the grid shows for it: the answer and heatmap, or why it was refused."""
    results = []
    for name, data in photos:
        try:
            row, photo = classify(data), preview(data)
            results.append({"name": name, "data": data, "row": row, "photo": photo, "heatmap": where_it_looked(data, photo, row["answer"])})
        except ImageError as err:
            results.append({"name": name, "error": str(err)})
        except Exception as err:  # the page shows why a file was refused; never a traceback
            message = getattr(err, "message", None) or str(err) or type(err).__name__
            results.append({"name": name, "error": message[:300]})
    return results


def show(result: dict, key: int) -> None:
    """One cell of the grid."""
    name = result["name"]
    if "error" in result:
        st.error(f"{name}: {result['error']}")
        return
    row = result["row"]
    st.image([result["photo"], result["heatmap"]], caption=[name, "where the model looked"])
    st.markdown(f"**{name}**: **{row['answer']}**, confidence {confidence(row):.0%}")
    st.caption(f"model {row['model_name']} version {row['model_version']}, weights: {row['model_weights']}, runtime: {row.get('model_runtime', 'keras')}")
    if warning := demo_warning(row):
        st.warning(warning)
    if why := reason(row):
        st.caption(why)
    choices = [label for label in (*settings().classes, "neither") if label != row["answer"]]
    label = st.radio("What does it really show?", choices, key=f"label-{key}", horizontal=True)
    if st.button("That's wrong", key=f"wrong-{key}"):
        keep_for_review(result["data"], label)
        st.success(f"Kept for the next training run as {label}. Thank you.")


st.set_page_config(page_title="Airplane, automobile, or neither?", layout="wide")  # wide: room for the grid
st.title("Airplane, automobile, or neither?")
classify_tab, audit_tab = st.tabs(["Classify photos", "Label audit"])
with classify_tab:
    files = st.file_uploader("Photos (drag and drop, or browse)", accept_multiple_files=True)
    shot = st.camera_input("Take a photo") if st.toggle("Use the camera") else None
    if st.button("Process", type="primary"):
        photos = [(file.name, file.getvalue()) for file in files or []]
        if shot is not None:
            photos.append(("camera photo", shot.getvalue()))
        if not photos:
            st.info("Pick or drop one or more photos first.")
        # Kept across reruns: pressing "That's wrong" reruns the page, and the answers must stay on it.
        st.session_state.results = process(photos)
    results = st.session_state.get("results", [])
    for start in range(0, len(results), COLUMNS):
        for column, (i, result) in zip(st.columns(COLUMNS), enumerate(results[start : start + COLUMNS], start)):
            with column:
                show(result, i)
with audit_tab:
    show_audit()
if counts := waiting():
    total = sum(counts.values())
    per_folder = ", ".join(f"{folder} {count}" for folder, count in counts.items())
    st.caption(f"{total} corrected photo{'s' if total != 1 else ''} waiting in {review_dir()} for the next training run ({per_folder}).")
