"""trainpipe's processes do not let MLflow send usage telemetry out unasked; a user's explicit choice stands.

Subprocesses without pytest's and CI's variables: MLflow turns its telemetry off by itself under those."""

from __future__ import annotations

import os
import subprocess
import sys

CI_MARKERS = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
              "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
              "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID", "DO_NOT_TRACK",
              "MLFLOW_DISABLE_TELEMETRY")


def python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in CI_MARKERS and k.lower() != "no_proxy"}
    clean.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")  # if it ever calls out: loopback
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_trainpipe_before_mlflow_leaves_mlflow_without_a_telemetry_client():
    out = python("import trainpipe, mlflow\n"
                 "from mlflow.telemetry.client import get_telemetry_client\n"
                 "from mlflow.telemetry.utils import is_telemetry_disabled\n"
                 "print(is_telemetry_disabled(), get_telemetry_client())")
    assert out == "True None"


def test_a_user_who_opts_in_keeps_the_setting():
    assert python("import os, trainpipe; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])",
                  MLFLOW_DISABLE_TELEMETRY="false") == "false"
