"""Render sections into one self-contained HTML page with jinja2, plots drawn by an inline plotly.js.

plotly.js is 4.8 MB; inlined as is, every report would weigh that much. It is inlined gzip-compressed
instead (1.5 MB, 2.0 MB as base64) and unpacked in the browser with the standard DecompressionStream
(Chrome/Edge 80+, Firefox 113+, Safari 16.4+), so the page still opens offline from a file, an email
or an MLflow artifact. Compressing takes ~0.2 s, so the packed bundle is cached per plotly version
next to the MLflow store template (TRAINPIPE_CACHE or ~/.cache/trainpipe). A page without plots
carries no bundle at all.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from trainpipe import files
from trainpipe.reports.view import Section


def _cache_dir() -> Path:
    """Where tracking.py keeps its MLflow store template: one per-machine cache for trainpipe."""
    return Path(os.environ.get("TRAINPIPE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "trainpipe")


@lru_cache(maxsize=1)
def packed_plotly() -> str:
    """plotly.js, gzip-compressed and base64-encoded, from the cache or built once."""
    cached = _cache_dir() / f"plotly-{metadata.version('plotly')}.min.js.gz.b64"
    try:
        return cached.read_text()
    except OSError:
        pass
    from plotly.offline import get_plotlyjs

    packed = base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(cached, packed)
    except OSError:
        pass  # no writable cache: pack again next time
    return packed


def cell(value: Any) -> str:
    """How a table cell or fact shows a value: 4 significant digits for floats, — for nothing."""
    if value is None or value == "":
        return "—" if value is None else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    return str(value)


@lru_cache(maxsize=1)
def environment() -> Any:
    import jinja2

    try:  # compiling the template costs ~0.1 s per process; jinja2 keeps the compiled code between processes
        (_cache_dir() / "jinja2").mkdir(parents=True, exist_ok=True)
        bytecode = jinja2.FileSystemBytecodeCache(str(_cache_dir() / "jinja2"))
    except OSError:
        bytecode = None
    env = jinja2.Environment(loader=jinja2.PackageLoader("trainpipe.reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, bytecode_cache=bytecode)
    env.filters["cell"] = cell
    return env


def figure_id(section: Section, index: int) -> str:
    return f"fig-{section.key}-{index}"


def figures_json(sections: list[Section]) -> tuple[int, str]:
    """How many plotly figures, and all their specs as one JSON object (by element id) safe inside <script>."""
    specs = {figure_id(section, i): figure.spec for section in sections
             for i, figure in enumerate(section.figures) if figure.spec is not None}
    return len(specs), json.dumps(specs, separators=(",", ":"), allow_nan=False, ensure_ascii=False).replace("</", "<\\/")


def render_page(title: str, subtitle: str, sections: list[Section]) -> str:
    count, specs = figures_json(sections)
    return environment().get_template("page.html.j2").render(
        title=title, subtitle=subtitle, sections=sections, figures=specs, figure_id=figure_id,
        plotly=packed_plotly() if count else None, generated=time.strftime("%Y-%m-%d %H:%M:%S %z"))


def write_atomic(path: Path, text: str) -> int:
    """The page, whole or not at all (trainpipe/files.py); returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    files.write_bytes(path, data)
    return len(data)
