"""An executed notebook as HTML (nbconvert), its failing cell marked, for the run page.

The HTML is served in a sandbox (`Content-Security-Policy: sandbox`, no `allow-scripts`)
and shown in a sandboxed iframe: a notebook's outputs are someone's HTML and must never
run script on this origin."""

from __future__ import annotations

import functools

import nbformat

FAILED_TAG = "aisci-failed"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1rem; color: #1d2330; }
.celltag_aisci-failed { outline: 3px solid #c62828; background: #fff1f0; }
.celltag_aisci-failed::before { content: "This cell failed"; display: block;
  font-weight: 700; color: #b71c1c; padding: .25rem .5rem; }
pre { white-space: pre-wrap; }
.jp-Cell { margin-bottom: .75rem; }
"""


@functools.cache
def _exporter():
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = False
    return exporter


def mark_failed(nb: nbformat.NotebookNode) -> int | None:
    """Tag the first cell whose outputs hold an error; its index, or None."""
    for i, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if FAILED_TAG not in tags:
                tags.append(FAILED_TAG)
            return i
    return None


def render(raw: bytes) -> tuple[str, int | None]:
    """(HTML, index of the failing cell or None); ValueError for something not a notebook."""
    try:
        nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a bad file
        raise ValueError(f"not a notebook: {exc}") from None
    failed = mark_failed(nb)
    body, _ = _exporter().from_notebook_node(nb)
    return body.replace("</head>", f"<style>{STYLE}</style></head>", 1), failed
