"""Models after training: the MLflow registry (client.py: versions, aliases, compare-and-set promotion, audit;
lock.py), the packaged pyfunc models (packaging.py, ranking_packaging.py and their models-from-code entry
points), batch inference (predict.py), the served recommender (serving.py) and the model card (model_card.py)."""
