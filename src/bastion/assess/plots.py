"""Matplotlib figures rendered to self-contained SVG for reports."""

from __future__ import annotations

import io
import re
from typing import Any

from bastion.core.finding import Plot


def new_figure(width: float = 5.5, height: float = 3.6) -> tuple[Any, Any]:
    """A (figure, axes) pair on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def to_plot(fig: Any, title: str) -> Plot:
    """Render `fig` as an SVG Plot (no XML prologue, so it can be inlined in HTML)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "bastion", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    # Drop the RDF metadata block: it names external vocabularies and carries nothing visual.
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, count=1, flags=re.DOTALL)
    return Plot(title=title, svg=svg)
