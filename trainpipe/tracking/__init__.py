"""MLflow tracking: the Tracker over MlflowClient (tracker.py), the `tracking` section (config.py), what a run
records about its environment (environment.py), database URLs and their drivers (dburl.py)."""
