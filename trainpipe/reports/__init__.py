"""The HTML run report (docs/monitoring.md): what a run did, readable without the terminal or the MLflow UI.

Building blocks, each with one job:
    folder.py     read a run folder (finished and failed stages alike) into plain Python values
    tracked.py    the few facts only MLflow holds (current aliases, git commit, library versions)
    sections*.py  one function per report section: the section's numbers, tables and figure specs
    figures.py    plotly figure specs (plain dicts) from arrays
    importance.py native feature importance for boosters, permutation importance otherwise
    render.py     the jinja2 page with an inline, offline plotly.js
    build.py      `write_report` / `write_comparison`: the entry points for the CLI and the report stage
"""
