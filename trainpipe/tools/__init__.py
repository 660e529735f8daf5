"""Helpers around the pipeline rather than in it: `trainpipe init` (scaffold.py), the example data sets
(datasets.py) and the generated configuration reference (config_docs.py)."""
