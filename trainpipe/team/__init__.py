"""Team mode: PostgreSQL and an MLflow tracking server on loopback, started and stopped by `trainpipe team`.

`services.up/down/status` orchestrate; `postgres.py` and `mlflow_server.py` each manage one service;
`processes.py` starts detached processes and stops exactly the ones recorded (by PID and start time).
"""
