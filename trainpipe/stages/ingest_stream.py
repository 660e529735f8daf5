"""ingest for a table larger than memory (data.streaming): one pass over the Parquet row groups computes the
fingerprint and the column statistics; the table is never held whole. The decision to stream is made here,
once per run, and recorded in the manifest (`outputs.streaming`): every later stage follows it, even in another
process with other memory free."""

from __future__ import annotations

import json

from trainpipe.data.io import file_stats
from trainpipe.data.stream_read import Decision, ParquetSource
from trainpipe.data.stream_stats import StreamFingerprint, StreamStatistics
from trainpipe.errors import DataError
from trainpipe.redaction import redact_url_credentials
from trainpipe.stages.context import StageContext, StageResult


def run_streamed(ctx: StageContext, decision: Decision) -> StageResult:
    source = ParquetSource(ctx.config.data)
    if source.rows == 0:
        raise DataError(f"data.path: the dataset is empty (0 rows in {', '.join(source.files[:3])})", key="data.path")
    ctx.task.check_columns(source.empty_frame())
    digest, stats = StreamFingerprint(), StreamStatistics(source.rows, seed=ctx.config.seed)
    for offset, frame in source.frames():
        digest.update(frame)
        stats.update(offset, frame)
    fingerprint = digest.hexdigest()
    (ctx.stage_dir / "stats.json").write_text(json.dumps(stats.document(), indent=2))
    files = source.files
    record = {"files": [redact_url_credentials(f) for f in files], "files_stats": file_stats(files),
              "fingerprint": fingerprint, "rows": source.rows, "columns": source.columns, "streaming": True,
              "memory_bytes": source.memory_bytes, "decision": decision.reason}
    (ctx.stage_dir / "source.json").write_text(json.dumps(record, indent=2))
    return StageResult(
        identity=fingerprint,
        outputs={"stats": "stats.json", "source": "source.json", "files_stats": record["files_stats"],
                 "streaming": True},
        metrics={"data_rows": float(source.rows), "data_columns": float(len(source.columns)),
                 "data_memory_bytes": float(source.memory_bytes)},
        artifacts=["stats.json", "source.json"],
        summary={"rows": source.rows, "columns": len(source.columns), "files": len(files), "fingerprint": fingerprint,
                 "streaming": True, "streaming_decision": decision.reason},
    )
