# Two images from one file (docker-compose.yaml builds both):
#   target "airflow":   the official Airflow image plus this project's requirements
#   target "local-aws": the offline AWS stand-in (python -m local_aws), which really trains and serves
# Requirements are baked in at build time, never installed at container start.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${AIRFLOW_IMAGE} AS airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/dog-breed/
# constraints.txt is the frozen resolution the tests ran with; the image's own
# providers (celery, postgres, redis) stay as the base image installed them.
RUN pip install --no-cache-dir -r /opt/dog-breed/requirements.txt -c /opt/dog-breed/constraints.txt
# Compose mounts these over the copies; the copies let the image run on its own (e.g. Kubernetes).
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 model_scripts /opt/airflow/model_scripts

FROM ${PYTHON_IMAGE} AS local-aws
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements-local-aws.txt requirements-model.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements-local-aws.txt -c constraints.txt
COPY local_aws ./local_aws
COPY model_scripts ./model_scripts
RUN useradd --uid 50000 --gid 0 --create-home local-aws \
    && mkdir -p /state && chown local-aws:0 /state
USER local-aws
EXPOSE 4566
CMD ["python", "-m", "local_aws", "--host", "0.0.0.0", "--port", "4566", "--state-dir", "/state"]
