"""Number and table formatting shared by the CLI, the demo and the report: plain text, Markdown, HTML."""
from __future__ import annotations

import html
import math
from typing import Any, Sequence


def fmt(v: float | None) -> str:
    """A metric value in 4 significant digits (scientific outside [1e-3, 1e5)); '-' for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.2e}"


def fmt_count(n: int | None) -> str:
    """A parameter count as 3K / 1.2M."""
    if not n:
        return "default"
    if n >= 1_000_000:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}K" if n >= 1000 else str(n)


def format_table(rows: list[dict[str, Any]], columns: Sequence[str], align_right: Sequence[str] = ()) -> str:
    """Plain-text table; numbers should already be formatted as strings."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}

    def line(values: dict[str, Any]) -> str:
        cells = [str(values.get(c, "")).rjust(widths[c]) if c in align_right else
                 str(values.get(c, "")).ljust(widths[c]) for c in columns]
        return "  ".join(cells).rstrip()

    return "\n".join([line({c: c for c in columns}), "  ".join("-" * widths[c] for c in columns)] +
                     [line(r) for r in rows])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """Markdown table; a cell written as **x** is bold."""
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")
    return "\n".join(["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)] +
                     ["| " + " | ".join(map(esc, r)) + " |" for r in rows])


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """HTML table (escaped); a cell written as **x** is bold."""
    def cell(c: str, tag: str) -> str:
        text = html.escape(str(c))
        if text.startswith("**") and text.endswith("**"):
            text = f"<b>{text[2:-2]}</b>"
        return f"<{tag}>{text}</{tag}>"
    return ("<table><thead><tr>" + "".join(cell(h, "th") for h in header) + "</tr></thead><tbody>" +
            "".join("<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in rows) + "</tbody></table>")


CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
       "th,td{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}"
       "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}figcaption{font-size:13px;color:#555}")


def html_figure(png: bytes, caption: str) -> str:
    """A PNG embedded as a data URI (the page stays one self-contained file), with its caption."""
    import base64
    return (f"<figure><img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,"
            f"{base64.b64encode(png).decode()}\"><figcaption>{html.escape(caption)}</figcaption></figure>")


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page: no scripts, no external files."""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")
