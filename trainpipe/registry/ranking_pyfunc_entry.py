"""Entry point of the packaged recommender (MLflow "models from code")."""

from mlflow.models import set_model

from trainpipe.registry.ranking_packaging import RecommenderModel

set_model(RecommenderModel())
