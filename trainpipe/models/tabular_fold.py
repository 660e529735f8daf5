"""torch_mlp predicting straight from a raw DataFrame: its embeddings folded into the first layer at load time.

Why: predicting through `features.transform` builds the whole float32 matrix (numbers and category codes as
floats), then `TorchMLPFamily._inputs` splits it again, rounds the codes back to integers, and the network
looks up each code's embedding and multiplies it by its block of the first layer's weights, for every row.
Here, for a fitted preprocessor whose parts `data.column_plan` reads, the numeric inputs are read from their
columns into one float32 block (bitwise the matrix's values) and each category column straight into row indices
of a table precomputed once: embedding table · its first-layer weight block (float64, rounded to float32), the
layer's bias added to the first table. The first layer becomes `embedding_bag(sum) + numbers · W_num`, and the
rest of the network runs unchanged. Unknown and missing categories get exactly today's index (the same tables).

Arithmetic: the first layer's pre-activations are the same sum in another order and rounding (the embedding
products are computed once in float64 instead of per row in float32), so scores differ from the unfolded path
by float32 rounding (~1e-7 relative on the logits); a predicted class changes only for a row whose score is
that close to the threshold. Measured on 1M rows of synthetic_churn: benchmarks/bench_predict.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trainpipe.data import categories
from trainpipe.data.column_plan import CategoryColumn, Column, NumericColumn, column_plan, float64_part

if TYPE_CHECKING:
    import torch

Finish = Callable[["torch.Tensor"], np.ndarray]  # the network's outputs -> probabilities or regression values


class FoldedMLP:
    """A TorchMLPFamily's scores on raw frames; `read` returns None for a frame whose numeric dtypes the plan does
    not reproduce (the caller then takes the matrix path)."""

    def __init__(self, numeric: list[Column], categorical: list[CategoryColumn], indices: list[np.ndarray],
                 weight: torch.Tensor, table: torch.Tensor | None, bias: torch.Tensor, rest: torch.nn.Module,
                 out_dim: int, rows: int, finish: Finish) -> None:
        self.numeric, self.categorical, self.indices = numeric, categorical, indices
        self.weight, self.table, self.bias, self.rest, self.out_dim = weight, table, bias, rest, out_dim
        self.rows, self.finish = rows, finish

    def read(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """(numeric float32 block, int64 row indices into the folded table), read on threads for large frames:
        numpy's and Arrow's column work releases the GIL."""
        x_num = np.empty((len(frame), len(self.numeric)), dtype=np.float32)
        codes = np.empty((len(frame), len(self.categorical)), dtype=np.int64)
        names = {c.name for c in self.categorical} | {name for c in self.numeric
                                                      for name in (c.part if isinstance(c, NumericColumn) else (c.name,))}
        columns = {name: frame[name] for name in names}  # selected here: the threads only read them
        if not all(float64_part(columns, c.part) for c in self.numeric if isinstance(c, NumericColumn)):
            return None  # declined before any column is read

        def numeric(i: int) -> bool:
            column = self.numeric[i]
            values = column.lookup(columns) if isinstance(column, CategoryColumn) else column.values(columns)
            if values is None:
                return False
            x_num[:, i] = values
            return True

        def categorical(j: int) -> bool:
            codes[:, j] = self.categorical[j].lookup(columns, self.indices[j])
            return True

        jobs = [(numeric, i) for i in range(len(self.numeric))] + [(categorical, j) for j in range(len(self.categorical))]
        if len(frame) >= categories.PARALLEL_ROWS and len(jobs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1), thread_name_prefix="fold-read") as pool:
                done = list(pool.map(lambda job: job[0](job[1]), jobs))
        else:
            done = [run(k) for run, k in jobs]
        return (x_num, codes) if all(done) else None

    def outputs(self, x_num: np.ndarray, codes: np.ndarray) -> torch.Tensor:
        """The network's raw outputs, in the same batches as TorchMLPFamily._raw."""
        import torch
        from torch.nn import functional as F

        from trainpipe.engine.matmul import matmul_nt

        numbers, indices, rows = torch.from_numpy(x_num), torch.from_numpy(codes), self.rows
        outs = []
        with torch.inference_mode():
            for start in range(0, len(x_num), rows):
                stop = start + rows
                if self.table is None:
                    hidden = matmul_nt(numbers[start:stop], self.weight, self.bias)
                else:  # the bias is in the first table's rows
                    hidden = F.embedding_bag(indices[start:stop], self.table, mode="sum")
                    if x_num.shape[1]:
                        hidden.addmm_(numbers[start:stop], self.weight.T)
                outs.append(self.rest(hidden).float())
        return torch.cat(outs) if outs else torch.zeros((0, self.out_dim))

    def scores(self, frame: pd.DataFrame) -> np.ndarray | None:
        """What family.predict_proba (classification) or family.predict (regression) gives on the transformed
        frame, or None when `read` declines the frame."""
        inputs = self.read(frame)
        return None if inputs is None else self.finish(self.outputs(*inputs))


def fold(module: torch.nn.Module, lay: dict[str, Any], preprocessor: Any, rows: int, finish: Finish) -> FoldedMLP | None:
    """The folded predictor of a TabularMLP `module` with TorchMLPFamily's `lay`out, predicting `rows` per batch, or
    None when the preprocessor, layout or network is of a kind this does not fold."""
    import torch

    from torch import nn

    plan = column_plan(preprocessor)
    if plan is None or len(plan) != lay.get("n_features"):
        return None
    categorical = [column for i in lay["categorical"] if isinstance(column := plan[i], CategoryColumn)]
    net, embeddings = getattr(module, "net", None), getattr(module, "embeddings", None)
    if not (isinstance(net, nn.Sequential) and len(net) and isinstance(embeddings, nn.ModuleList)):
        return None
    first = net[0]
    if (not isinstance(first, nn.Linear) or first.bias is None or first.weight.dtype != torch.float32
            or first.weight.device.type != "cpu" or len(categorical) != len(lay["categorical"])):
        return None
    weight = first.weight.detach()
    n_num = len(lay["numeric"])
    w_num = weight[:, :n_num].contiguous()
    tables: list[torch.Tensor] = []
    indices: list[np.ndarray] = []
    start, offset = n_num, 0
    for column, embedding, width, card in zip(categorical, embeddings, lay["embedding_dims"],
                                              lay["cardinalities"]):
        block = weight[:, start:start + width].double()
        vectors = embedding.weight if isinstance(embedding, nn.Embedding) else None
        if vectors is None or vectors.shape != (card + 1, width):
            return None
        folded = vectors.detach().double() @ block.T  # (card + 1, hidden)
        tables.append(folded + first.bias.detach().double() if not tables else folded)
        # the float32 code table mapped as TorchMLPFamily._inputs maps codes: missing/unknown -> row 0
        shifted = np.rint(np.nan_to_num(column.table, nan=-1.0)).astype(np.int64) + 1
        indices.append(np.clip(shifted, 0, card) + offset)
        start, offset = start + width, offset + card + 1
    if start != weight.shape[1]:
        return None
    table = torch.cat(tables).float().contiguous() if tables else None
    last = net[-1]
    out_dim = last.out_features if isinstance(last, nn.Linear) else 1
    return FoldedMLP([plan[i] for i in lay["numeric"]], categorical, indices, w_num, table, first.bias.detach(),
                     net[1:], out_dim, rows, finish)
