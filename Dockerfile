# The serving image: the champion behind the guarded scoring app (serve/asgi.py).
# Kept in step with `mlflow models generate-dockerfile` (same base image, MLflow version, model path
# and dependency install; tests/test_serve_rest.py checks that); it adds only the guard, which
# refuses oversized bodies and never echoes input or a stack trace.
#
#   mlflow artifacts download -u models:/airplane-automobile-classifier@champion -d model_dir
#   docker build -t airplane-automobile .
#   docker run -p 5000:8080 airplane-automobile        # PORT=... to change the port inside
FROM python:3.11.7-slim

WORKDIR /opt/mlflow

# omegaconf: the guard reads conf/mlflow through pipeline.config, as the pipeline does.
RUN pip install mlflow==3.17.2 uvicorn==0.54.0 omegaconf==2.3.1

# The model with its own pinned requirements and bundled code (pipeline/), as MLflow installs them.
COPY model_dir /opt/ml/model
RUN python -c "from mlflow.models import container as C; C._install_pyfunc_deps('/opt/ml/model', install_mlflow=False, env_manager='local');"

COPY serve/ serve/
COPY pipeline/ pipeline/
COPY conf/mlflow/ conf/mlflow/

ENV MLFLOW_DISABLE_ENV_CREATION=True MODEL_URI=/opt/ml/model PORT=8080 SERVE_MAX_BODY_BYTES=20971520
EXPOSE 8080
RUN chmod o+rwX /opt/mlflow/
CMD uvicorn --factory serve.asgi:create_app --host 0.0.0.0 --port ${PORT}
