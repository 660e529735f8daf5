"""Entry point of the packaged pyfunc (MLflow "models from code"): what `mlflow.pyfunc.load_model` runs."""

from mlflow.models import set_model

from trainpipe.registry.packaging import PackagedModel

set_model(PackagedModel())
