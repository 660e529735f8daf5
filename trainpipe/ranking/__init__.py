"""What only the `ranking` task has and no other layer owns: its config section (config.py: RankingConfig,
the ranking metric names and cross-section checks) and the synthetic interactions generator (generate.py).

Everything else about ranking sits with the layer that owns the concern: the task's side of each stage in
tasks/ranking.py, interaction cleaning and the ranking split in data/, its metrics and baselines in
evaluation/, the two-tower family and its losses in models/, its packaging and serving in registry/, its
metrics table in cli/render.py, `init --task ranking` in tools/scaffold.py.
"""
