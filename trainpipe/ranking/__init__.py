"""The `ranking` task: interactions in, a two-tower retrieval model and top-K recommendations out.

Pure building blocks (interactions, split, features, metrics, baselines, generate, serving) plus the
ranking side of each pipeline stage (stages.py), which the generic stages delegate to with one early
`if config.task == "ranking"` so that the tabular paths stay as they are.
"""
