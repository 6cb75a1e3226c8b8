"""The one shell of every HTML page lens writes (``report.html``, ``summary.html``): a self-contained file that
opens offline — one stylesheet, plotly.js inlined once in ``<head>`` (every figure is a ``div`` plus a script
that calls it), images as PNG ``data:`` URIs — and the pieces they share: escaping, numbers, tables, figures."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:40px}h3{margin-top:24px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 10px;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:600;font-size:.9em}
.trained{background:#d9f2d9;color:#145214}.untrained{background:#fde0dc;color:#8a1c0c}
.note{color:#555;font-size:.92em}.strip{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
.fig{margin:8px 0 16px 0}
"""


def esc(value: object) -> str:
    """``value`` as text safe in HTML (quotes too)."""
    return html.escape(str(value), quote=True)


def number(v: object, digits: int = 3) -> str:
    """A float with ``digits`` decimals (``–`` for NaN); anything else escaped as text."""
    if isinstance(v, (float, np.floating)):
        return "–" if math.isnan(float(v)) else f"{float(v):.{digits}f}"
    return esc(v)


def table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[bool] = ()) -> str:
    """A table; ``numeric[i]`` right-aligns column ``i`` (floats shown by :func:`number`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
            cells.append(f"<td{cls}>{number(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) or (H, W) image as a ``data:image/png;base64,...`` URI (PIL encoder)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"png_data_uri expects uint8, got {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jpeg_data_uri(image: np.ndarray, quality: int = 88) -> str:
    """A uint8 (H, W, 3) image as a ``data:image/jpeg;base64,...`` URI: for pictures of video frames (a
    fifth of the PNG's bytes at no visible loss; PNG stays for exact pixels)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"jpeg_data_uri expects uint8, got {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Figures:
    """Turns plotly figures into divs of one page; counts them (a test checks every one rendered)."""

    def __init__(self) -> None:
        self.count = 0

    def make(self, build: Callable[[], Any], what: str, height: int | None = None) -> str:
        """``div(build())``, or a visible note if building the figure fails (the page still gets written)."""
        try:
            fig = build()
        except Exception as exc:  # a broken figure must not lose the rest of the page
            return f"<p class='note'>{esc(what)} unavailable: {esc(type(exc).__name__)}: {esc(exc)}</p>"
        return self.div(fig, height=height)

    def div(self, fig, height: int | None = None) -> str:
        self.count += 1
        if height is not None:
            fig.update_layout(height=height)
        inner = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=f"fig{self.count}",
            config={"displaylogo": False, "responsive": True},
        )
        return f'<div class="fig">{inner}</div>'


def page(title: str, body: str) -> str:
    """The whole document: ``title`` as its title and first heading, then ``body`` (HTML)."""
    from plotly.offline import get_plotlyjs

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{esc(title)}</h1>
{body}
</body></html>
"""
