"""Config section `orchestration`: how an orchestrator's tasks retry and time out (docs/orchestration.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OrchestrationConfig(BaseModel):
    """Config section `orchestration`. Read when a DAG is built; a plain `trainpipe run` ignores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(2, ge=0, description="Retries of a failed stage task (the first task, which only "
                         "checks the config, never retries): a retried train resumes from its checkpoint, "
                         "finished stages are reused.")
    retry_delay: float = Field(60.0, gt=0, description="Seconds before the first retry; the delay doubles "
                               "with each further retry (exponential backoff).")
    timeout: float | None = Field(None, gt=0, description="Seconds one task may run before the orchestrator "
                                  "stops it (SIGTERM: train checkpoints first, and its retry resumes); null: "
                                  "no limit.")
