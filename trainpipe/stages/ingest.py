"""ingest: read the data once, fingerprint its content, record statistics and the source files."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from trainpipe.data.io import column_statistics, file_stats, fingerprint, read_table
from trainpipe.data.stream_read import Decision, decide
from trainpipe.errors import DataError
from trainpipe.redaction import redact_url_credentials
from trainpipe.stages.context import StageContext, StageResult, StageSpec

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig


def line(s: dict) -> str:
    return f"{s.get('rows', 0):,} rows × {s.get('columns')} columns · fingerprint {str(s.get('fingerprint'))[:12]}"


def source_files(config: PipelineConfig) -> dict[str, Any]:
    """The cache key also covers the size and mtime of every local source file; a remote (URL) source has no
    cheap change detection: a random nonce, so it is always re-read."""
    from trainpipe.data.io import expand_paths

    stats = file_stats(expand_paths(config.data.path))
    extra: dict[str, Any] = {"data_files": stats}
    if any("size" not in s for s in stats):
        extra["nonce"] = secrets.token_hex(8)
    return extra


SPEC = StageSpec("ingest", sections=("data",), upstream=(), line=line, inputs=source_files)


def run(ctx: StageContext) -> StageResult:
    decision = streaming_decision(ctx.config)
    if decision.stream:  # a table larger than memory: stages/ingest_stream.py, never loaded whole
        from trainpipe.stages.ingest_stream import run_streamed

        return run_streamed(ctx, decision)
    frame, files = read_table(ctx.config.data)
    if len(frame) == 0:
        raise DataError(f"data.path: the dataset is empty (0 rows in {', '.join(files[:3])})", key="data.path")
    ctx.task.check_columns(frame)
    digest = fingerprint(frame)
    ctx.memo.update(frame=frame, fingerprint=digest)

    stats = column_statistics(frame, seed=ctx.config.seed)
    (ctx.stage_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    source = {"files": [redact_url_credentials(f) for f in files], "files_stats": file_stats(files),
              "fingerprint": digest,
              "rows": len(frame), "columns": [str(c) for c in frame.columns]}
    (ctx.stage_dir / "source.json").write_text(json.dumps(source, indent=2))
    return StageResult(
        identity=digest,
        outputs={"stats": "stats.json", "source": "source.json", "files_stats": source["files_stats"]},
        metrics={"data_rows": float(len(frame)), "data_columns": float(frame.shape[1])},
        artifacts=["stats.json", "source.json"],
        summary={"rows": len(frame), "columns": frame.shape[1], "files": len(files), "fingerprint": digest,
                 **({"warning_messages": [decision.reason]} if decision.warn else {})},
    )


def streaming_decision(config: PipelineConfig) -> Decision:
    """data.streaming: off costs nothing; auto looks at the Parquet metadata and the memory available now."""
    if config.data.streaming == "off":
        return Decision(False, "data.streaming: off")
    from trainpipe.tasks.streamed import blockers

    return decide(config.data, blockers(config))
