"""A run's alerts: one `Alerter` per run (the `alerts` section) and the events the run itself raises.

Stages raise their events through `StageContext.emit` (health, drift, budget, gate failed, champion changed);
the pipeline sets `ctx.on_event` to `RunAlerts.send`. How the run ends is the pipeline's to say: `ended`
records `run_finished` or `run_failed` in `<run>/events.jsonl` and alerts it. A failed gate already raised
`gate_failed` from its stage, so it is not alerted twice as a failed run. Nothing here raises: an alert that
cannot be delivered is logged once by the Alerter and the run goes on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.errors import ConfigError, GateFailed
from trainpipe.monitoring import events
from trainpipe.monitoring.alerts import STATE_FILE_NAME, Alerter
from trainpipe.stages.context import record_event
from trainpipe.store import Store

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.monitoring.events import Event

log = logging.getLogger(__name__)


def check_alerts(config: PipelineConfig) -> None:
    """Preflight: every environment variable a configured channel reads is set (else no alert could go out)."""
    if not (config.alerts.enabled and config.alerts.has_channels):
        return
    missing = config.alerts.missing_environment()
    if missing:
        raise ConfigError(missing[0], key=missing[0].split(":", 1)[0], lines=missing)


def make_alerter(config: PipelineConfig, store: Store) -> Alerter | None:
    """The Alerter of a config, throttled with every process of the store; None when nothing would be sent."""
    if not (config.alerts.enabled and config.alerts.has_channels):
        return None
    return Alerter(config.alerts, store.root / STATE_FILE_NAME, credentials=config.credentials())


class RunAlerts:
    """What one run sends; built with the run, the Alerter itself only when the first event comes."""

    def __init__(self, config: PipelineConfig, store: Store, run_id: str, run_dir: Path):
        self.config, self.store, self.run_id, self.run_dir = config, store, run_id, run_dir
        self.active = config.alerts.enabled and config.alerts.has_channels
        self._alerter: Alerter | None = None

    def send(self, event: Event) -> None:
        if not self.active:
            return
        if self._alerter is None:
            self._alerter = make_alerter(self.config, self.store)
        if self._alerter is not None:
            self._alerter.send(event)

    def ended(self, meta: dict[str, Any], error: BaseException | None) -> None:
        """The run is over (run.json `meta` is final): record and alert how it ended. Never raises: it runs while
        the run's own error is on its way to the user."""
        try:
            self._ended(meta, error)
        except Exception:  # noqa: BLE001 -- e.g. a full disk under events.jsonl: the run's outcome stands
            log.warning("alerts: could not record how run %s ended", self.run_id, exc_info=True)

    def _ended(self, meta: dict[str, Any], error: BaseException | None) -> None:
        status = meta.get("status")
        if status == "completed":
            event = events.run_finished(self.run_id, completed_line(self.run_dir, meta),
                                        {"status": status, "run_dir": str(self.run_dir)})
        elif isinstance(error, GateFailed):
            return  # the gate stage emitted gate_failed with its reasons
        else:
            stage = next((name for name, s in meta.get("stages", {}).items() if s.get("status") in ("failed", "killed")),
                         None)
            what = meta.get("error") or status or "failed"
            event = events.run_failed(self.run_id, stage, what if status != "killed" else f"killed: {what}")
        if self.run_dir.exists():
            record_event(self.run_dir, event)
        self.send(event)


def completed_line(run_dir: Path, meta: dict[str, Any]) -> str:
    """`test roc_auc 0.9934; registered churn v3 @challenger @champion; 41.2 s`, from the run folder."""
    parts = []
    evaluate = _summary(run_dir / "evaluate")
    if evaluate.get("primary_metric") and evaluate.get("test") is not None:
        parts.append(f"test {evaluate['primary_metric']} {evaluate['test']:.4f}")
    registered = _summary(run_dir / "register")
    if registered.get("version"):
        aliases = " ".join(f"@{a}" for a in registered.get("aliases") or [])
        parts.append(f"registered {registered.get('name')} v{registered['version']} {aliases}".rstrip())
    seconds = sum(s.get("seconds") or 0.0 for s in meta.get("stages", {}).values())
    parts.append(f"{seconds:.1f} s of stages")
    return "; ".join(parts)


def _summary(stage_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((stage_dir / "manifest.json").read_text()).get("summary") or {})
    except (OSError, ValueError):
        return {}


def send_alert(config: PipelineConfig | None, store: Store, event: Event) -> bool:
    """One event outside a run (`models promote/rollback --config`); False when the config has no channel."""
    if config is None:
        return False
    check_alerts(config)
    alerter = make_alerter(config, store)
    if alerter is None:
        return False
    return alerter.send(event).sent
