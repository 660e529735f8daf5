"""Running a pipeline under an orchestrator: one task per stage, passing only the run id.

`config.py` (the `orchestration` section) and `trigger.py` (run ids and overrides from a trigger) import
no orchestrator; `airflow.py` builds the Airflow 3 DAG and imports Airflow only when called.
"""
