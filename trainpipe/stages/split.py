"""split: row positions for train/validation/test, saved with the strategy, seed and sizes."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from trainpipe.data.split import SPLITS, make_split, small_split_warnings
from trainpipe.stages import load_table


def run(ctx) -> dict:
    if ctx.config.task == "ranking":  # interactions, not a features matrix: trainpipe/ranking/stages.py
        from trainpipe.ranking import stages as ranking

        return ranking.split(ctx)
    frame = load_table(ctx)
    config = ctx.config
    parts, strategy = make_split(frame, config.split, config.task, config.data.target, config.seed)
    np.savez(ctx.stage_dir / "split.npz", **{name: parts[name].astype(np.int64) for name in SPLITS})
    digest = hashlib.sha256(b"".join(parts[name].astype(np.int64).tobytes() for name in SPLITS)).hexdigest()[:16]
    manifest = {"strategy": strategy, "seed": config.split.seed if config.split.seed is not None else config.seed,
                "sizes": {name: int(len(parts[name])) for name in SPLITS}, "hash": digest}
    if config.task != "regression":
        labels = frame[config.data.target]
        manifest["class_counts"] = {name: {str(k): int(v) for k, v in labels.iloc[parts[name]].value_counts(sort=False).items()}
                                    for name in SPLITS}
    manifest["warnings"] = small_split_warnings(parts, frame[config.data.target] if config.task != "regression" else None)
    (ctx.stage_dir / "split.json").write_text(json.dumps(manifest, indent=2))
    return {"identity": digest, "outputs": {"split": "split.npz", "manifest": "split.json"},
            "artifacts": ["split.json"],
            "summary": {"strategy": strategy, **manifest["sizes"], "warning_messages": manifest["warnings"]},
            "metrics": {f"rows_{name}": float(len(parts[name])) for name in SPLITS}}
