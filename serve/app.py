"""Streamlit page: photos picked or dropped, then "Process" -> each photo with its verdict and confidence.

Run: streamlit run serve/app.py. With SERVING_URL set (the /invocations URL) it asks that endpoint;
otherwise it loads the champion model itself, once per server process.
"""

from __future__ import annotations

import os

import streamlit as st

from pipeline.images import ImageError, decode
from pipeline.serving_settings import IMAGE_COLUMN
from serve import confidence, demo_warning, model_uri, reason, use_tracking_store

PREVIEW_PIXELS = 640


@st.cache_resource(show_spinner="Loading the model...")
def local_model():
    import mlflow.pyfunc

    use_tracking_store()
    return mlflow.pyfunc.load_model(model_uri())


def classify(data: bytes) -> dict:
    """Image file bytes -> the verdict row; raises with a readable message if the file is refused."""
    url = os.environ.get("SERVING_URL")
    if url:
        from serve.client import predict

        return predict(url, [data])[0]
    import pandas as pd

    return local_model().predict(pd.DataFrame({IMAGE_COLUMN: [data]})).iloc[0].to_dict()


def preview(data: bytes):
    """The photo as the model sees it (upright, RGB), small enough to show; THE loader decodes it."""
    image = decode(data, draft_size=PREVIEW_PIXELS)
    image.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
    return image


st.title("Airplane, automobile, or neither?")
files = st.file_uploader("Photos (drag and drop, or browse)", accept_multiple_files=True)
if st.button("Process", type="primary"):
    if not files:
        st.info("Pick or drop one or more photos first.")
    for file in files or []:
        data = file.getvalue()
        try:
            row = classify(data)
            image = preview(data)
        except ImageError as err:
            st.error(f"{file.name}: {err}")
            continue
        except Exception as err:  # the page shows why a file was refused; never a traceback
            message = getattr(err, "message", None) or str(err) or type(err).__name__
            st.error(f"{file.name}: {message[:300]}")
            continue
        st.image(image, caption=file.name)
        st.markdown(f"**{file.name}**: **{row['answer']}**, confidence {confidence(row):.0%}")
        st.caption(
            f"model {row['model_name']} version {row['model_version']}, weights: {row['model_weights']}, runtime: {row.get('model_runtime', 'keras')}"
        )
        if warning := demo_warning(row):
            st.warning(warning)
        if why := reason(row):
            st.caption(why)
