"""The page: jinja2 with autoescaping, figures as one JSON object, plotly.js packed once per version."""

from __future__ import annotations

import base64
import gzip
import json
import re

import pytest

from trainpipe.reports import figures as fig
from trainpipe.reports import render
from trainpipe.reports.view import Figure, Section, Table


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINPIPE_CACHE", str(tmp_path / "cache"))
    render.packed_plotly.cache_clear()
    yield tmp_path / "cache"
    render.packed_plotly.cache_clear()


def sections() -> list[Section]:
    plot = Figure("Loss", fig.lines({"train_loss": ([1, 2], [0.5, 0.4])}, "epoch", "loss"))
    return [Section("data", "Data", facts=[("rows", "1,000"), ("share", 0.123456)],
                    tables=[Table("Columns <b>", ["name", "value"], [["<script>alert(1)</script>", 1.5], ["x", None]])],
                    figures=[plot], notes=["drift: not measured"]),
            Section("training", "Training", missing="stage train failed: boom </script>")]


def test_plotly_js_is_packed_gzip_base64_once_and_read_back_from_the_cache(cache):
    from plotly.offline import get_plotlyjs

    packed = render.packed_plotly()
    assert gzip.decompress(base64.b64decode(packed)).decode() == get_plotlyjs()
    cached = list(cache.glob("plotly-*.min.js.gz.b64"))
    assert len(cached) == 1 and cached[0].read_text() == packed
    assert len(packed) < len(get_plotlyjs()) / 2  # ~2 MB instead of ~4.8 MB
    cached[0].write_text("sentinel")
    render.packed_plotly.cache_clear()
    assert render.packed_plotly() == "sentinel"  # the cache is what a second report reads


def test_page_escapes_text_and_embeds_every_figure_spec_as_json(cache):
    html = render.render_page("run <1>", "binary", sections())
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h1>run &lt;1&gt;</h1>" in html
    specs = json.loads(re.search(r'<script id="figures" type="application/json">(.*?)</script>', html, re.DOTALL).group(1))
    assert list(specs) == ["fig-data-0"] and specs["fig-data-0"]["data"][0]["name"] == "train_loss"
    assert 'id="fig-data-0"' in html and 'data-plots="pending"' in html
    assert "Not available: stage train failed: boom &lt;/script&gt;" in html
    assert "<dd>0.1235</dd>" in html and "<td>—</td>" in html  # 4 significant digits, — for nothing


def test_a_page_without_plots_carries_no_plotly_bundle(cache):
    html = render.render_page("failed run", "binary", [sections()[1]])
    assert 'data-plots="none"' in html and "plotly-bundle" not in html and len(html) < 20_000
    assert not list(cache.glob("plotly-*"))


def test_figure_json_cannot_close_the_script_element():
    section = Section("x", "X", figures=[Figure("t", fig.bars(["</script><b>"], [1.0], "v"))])
    _, text = render.figures_json([section])
    assert "</" not in text and json.loads(text)["fig-x-0"]["data"][0]["y"] == ["</script><b>"]


def test_long_tables_fold_and_cells_format_numbers():
    html = render.render_page("t", "s", [Section("d", "D", tables=[Table("Many", ["i"], [[i] for i in range(40)])])])
    assert "<summary>Many (40 rows)</summary>" in html
    assert render.cell(1234567.0) == "1,234,567" and render.cell(True) == "yes" and render.cell([1, "a"]) == "1, a"
    assert render.cell(float("nan")) == "nan"


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    size = render.write_atomic(tmp_path / "sub" / "r.html", "héllo")
    assert size == len("héllo".encode()) and [p.name for p in (tmp_path / "sub").iterdir()] == ["r.html"]
