"""ingest: read the data once, fingerprint its content, record statistics and the source files."""

from __future__ import annotations

import json

from trainpipe.data.io import column_statistics, file_stats, fingerprint, read_table
from trainpipe.errors import DataError
from trainpipe.redaction import redact_url_credentials


def run(ctx) -> dict:
    frame, files = read_table(ctx.config.data)
    if len(frame) == 0:
        raise DataError(f"data.path: the dataset is empty (0 rows in {', '.join(files[:3])})", key="data.path")
    if ctx.config.task == "ranking":
        from trainpipe.data.interactions import require_columns

        require_columns(frame, ctx.config.ranking)
    elif ctx.config.data.target not in frame.columns:
        raise DataError(f"data.target: column {ctx.config.data.target!r} is not in the data "
                        f"(columns: {', '.join(map(str, frame.columns[:12]))})", key="data.target")
    digest = fingerprint(frame)
    ctx.memo.update(frame=frame, fingerprint=digest)

    stats = column_statistics(frame, seed=ctx.config.seed)
    (ctx.stage_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    source = {"files": [redact_url_credentials(f) for f in files], "files_stats": file_stats(files),
              "fingerprint": digest,
              "rows": len(frame), "columns": [str(c) for c in frame.columns]}
    (ctx.stage_dir / "source.json").write_text(json.dumps(source, indent=2))
    return {
        "identity": digest,
        "outputs": {"stats": "stats.json", "source": "source.json", "files_stats": source["files_stats"]},
        "metrics": {"data_rows": float(len(frame)), "data_columns": float(frame.shape[1])},
        "artifacts": ["stats.json", "source.json"],
        "summary": {"rows": len(frame), "columns": frame.shape[1], "files": len(files), "fingerprint": digest},
    }
