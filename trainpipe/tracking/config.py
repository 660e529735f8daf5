"""Config section `tracking`: where MLflow is, which experiment, extra tags."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrackingConfig(BaseModel):
    """Config section `tracking`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Log runs to MLflow.")
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///<store>/mlflow.db. A tracking "
                            "server (http://…, e.g. from `trainpipe team up`) shares runs and the registry: docs/team.md.")
    experiment: str | None = Field(None, description="MLflow experiment; default: the pipeline name.")
    run_name: str | None = Field(None, description="MLflow run name; default: the trainpipe run id.")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on every run.")
