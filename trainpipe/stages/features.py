"""features: fit the ColumnTransformer on train only; save it and the transformed matrices.

The matrices are the stage's outputs, so the pipeline's cache index makes an unchanged rerun reuse
them (keyed by data fingerprint, split and features config).
"""

from __future__ import annotations

import json

import joblib
import numpy as np

from trainpipe.data.features import (
    LabelCoding,
    build_preprocessor,
    empty_column_warning,
    select_columns,
    transform,
)
from trainpipe.data.split import SPLITS
from trainpipe.models import get_family
from trainpipe.stages import load_table


def run(ctx) -> dict:
    if ctx.config.task == "ranking":  # interactions, not a features matrix: trainpipe/ranking/stages.py
        from trainpipe.ranking import stages as ranking

        return ranking.features(ctx)
    frame = load_table(ctx)
    config = ctx.config
    target = config.data.target
    with np.load(ctx.upstream("split") / "split.npz") as split:
        parts = {name: split[name] for name in SPLITS}

    exclude = [target] + ([config.data.id_column] if config.data.id_column else [])
    roles = select_columns(frame, config.features, exclude)
    needs = get_family(config.model.type).needs
    preprocessor, resolved = build_preprocessor(roles, config.features, needs.tree_model, needs.handles_missing,
                                                needs.categorical_codes)
    preprocessor.fit(frame.iloc[parts["train"]])  # fitted on training rows only

    # One transform of the whole table, then numpy row gathers: cheaper than three DataFrame slices.
    coding = LabelCoding.fit(frame[target], config.task, config.data.positive_class)
    X, y = transform(preprocessor, frame), coding.encode(frame[target])
    for name in SPLITS:
        np.save(ctx.stage_dir / f"X_{name}.npy", X[parts[name]])
        np.save(ctx.stage_dir / f"y_{name}.npy", y[parts[name]])
    joblib.dump(preprocessor, ctx.stage_dir / "preprocessor.joblib")
    names = [str(n) for n in preprocessor.get_feature_names_out()]
    info = {"roles": roles, "resolved": resolved, "feature_names": names, "labels": coding.state_dict(),
            "input_columns": roles["numeric"] + roles["categorical"] + roles["passthrough"] + roles["datetime"]}
    if needs.categorical_codes and resolved["encoding"] == "ordinal" and roles["categorical"]:
        # Which matrix columns hold codes, and how many codes each has (from train: the encoder's fit).
        first = len(roles["numeric"])
        columns = list(range(first, first + len(roles["categorical"])))
        train_codes = X[parts["train"]][:, columns]
        info["categorical_codes"] = {"columns": columns, "names": roles["categorical"],
                                     "cardinalities": [int(max(train_codes[:, i].max(initial=-1), -1)) + 1
                                                       for i in range(len(columns))]}
    (ctx.stage_dir / "features.json").write_text(json.dumps(info, indent=2, default=str))
    return {
        "outputs": {"preprocessor": "preprocessor.joblib", "info": "features.json"},
        "artifacts": ["preprocessor.joblib", "features.json"],
        "summary": {"numeric": len(roles["numeric"]), "categorical": len(roles["categorical"]),
                    "datetime": len(roles["datetime"]),
                    "dropped": roles["dropped"], "empty": roles["empty"], "features_out": len(names), **resolved,
                    "warning_messages": [empty_column_warning(c, len(frame)) for c in roles["empty"]]},
    }
