"""Config section `report`: whether a run ends with its HTML report (the report stage, trainpipe/stages/report.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Write the run's HTML report (report/report.html in the run folder, and "
                          "an MLflow artifact) after register, and after a failed gate; `trainpipe report RUN_ID` "
                          "writes one for any run either way.")
