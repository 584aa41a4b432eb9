# The serving image: the champion behind the guarded scoring app (serve/asgi.py).
# Kept in step with `mlflow models generate-dockerfile` (same MLflow version, model path and
# dependency install; tests/test_serve_rest.py checks that); it adds the guard's limits and clean
# errors, a non-root user, a health check, and layers that a new champion does not rebuild.
#
#   mlflow artifacts download -u models:/airplane-automobile-classifier@champion -d model_dir
#   docker build -t airplane-automobile .                       # --build-arg BASE_IMAGE=... where no registry is reachable
#   docker run -p 5000:8080 airplane-automobile                 # PORT=... to change the port inside
#   docker build --target page -t airplane-automobile-page .    # the web page, on $PORT (a PaaS sets it)
ARG BASE_IMAGE=python:3.11.7-slim
FROM ${BASE_IMAGE} AS serving

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/mlflow

# python-multipart: the guard's raw uploads (multipart/form-data); conf/mlflow is read with PyYAML, which MLflow brings.
RUN pip install mlflow==3.17.2 uvicorn==0.54.0 python-multipart==0.0.34

# The model's own pinned requirements first, in their own layer: a new champion with the same
# requirements reuses it, and only the model (below) is copied again.
COPY model_dir/requirements.txt /opt/ml/requirements.txt
RUN pip install -r /opt/ml/requirements.txt
COPY model_dir /opt/ml/model
RUN python -c "from mlflow.models import container as C; C._install_pyfunc_deps('/opt/ml/model', install_mlflow=False, env_manager='local');"

COPY serve/ serve/
COPY pipeline/ pipeline/
COPY conf/mlflow/ conf/mlflow/

RUN useradd --system --no-create-home --uid 10001 serving
USER serving
ENV MLFLOW_DISABLE_ENV_CREATION=True MODEL_URI=/opt/ml/model HOST=0.0.0.0 PORT=8080 SERVE_MAX_BODY_BYTES=20971520
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/ping\", timeout=2)"]
# Exec form: SIGTERM reaches the server itself, which stops within 2 s.
CMD ["python", "-m", "serve.asgi"]

# The web page, the same way: the same model and code, Streamlit on $PORT (Heroku and other PaaS
# set it at run time, so it is read when the container starts; `exec` keeps SIGTERM reaching it).
FROM serving AS page
USER root
# matplotlib colours the page's heatmaps.
RUN pip install streamlit==1.67.0 matplotlib==3.11.2 && mkdir /review && chown serving /review
USER serving
# "That's wrong" keeps corrected photos here: mount a volume to keep them (docker run -v review:/review ...).
ENV PORT=8501 REVIEW_DIR=/review
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/_stcore/health\", timeout=2)"]
CMD ["sh", "-c", "exec streamlit run serve/app.py --server.port=$PORT --server.address=0.0.0.0 --server.headless=true --browser.gatherUsageStats=false"]

# The default target (`docker build .`): the serving image.
FROM serving
