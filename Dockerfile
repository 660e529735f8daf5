# syntax=docker/dockerfile:1
# The trainpipe image: `trainpipe` is the entrypoint, the store a volume at /store (docs/orchestration.md).
#   docker build -t trainpipe .                                    CPU torch, xgboost-cpu, lightgbm
#   docker build --build-arg EXTRAS=cpu,airflow -t trainpipe-airflow .      + Airflow 3, for Airflow workers
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#                --build-arg EXTRAS=gpu -t trainpipe-cuda .        CUDA torch and GPU xgboost
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=cpu
WORKDIR /src
COPY docker/install.sh docker/install.sh
RUN sh docker/install.sh torch /opt/venv
COPY pyproject.toml README.md constraints.txt ./
COPY trainpipe trainpipe
RUN sh docker/install.sh trainpipe /opt/venv

FROM python:${PYTHON_VERSION}-slim
# libgomp1: the OpenMP runtime that the LightGBM wheel links against
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 trainpipe \
    && useradd --uid 10001 --gid trainpipe --create-home --shell /usr/sbin/nologin trainpipe \
    && mkdir /store /pipelines \
    && chown trainpipe:trainpipe /store /pipelines
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    TRAINPIPE_HOME=/store \
    PYTHONUNBUFFERED=1
VOLUME /store
WORKDIR /pipelines
USER 10001:10001
ENTRYPOINT ["trainpipe"]
CMD ["--help"]
