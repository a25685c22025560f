"""One report from the predictions: ``report.md`` and a self-contained ``report.html``
(figures embedded), with the held-out table, the prequential table and every figure.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.evaluate import evaluate
from consumers.output import readable, write_text
from consumers.plots import drawn_weights, plot_all, weight_unit

CAPTIONS = {
    "predicted_vs_actual.png": "Predicted against actual wall time, per model. Every prediction "
    "was made before the model learned that run; test runs are never learned.",
    "learning_curves.png": "Prequential error while learning: the MAE of the last 20 predictions "
    "against the number of records the model had learned.",
    "error_by_deck.png": "The best model's held-out error by deck.",
    "error_by_size.png": "The best model's held-out error by problem size.",
}


def write_report(
    predictions: list[dict[str, Any]],
    out: Path,
    models_info: list[dict[str, Any]] | None = None,
    title: str = "lammps-stream report",
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and the figures into ``out``."""
    figures = plot_all(predictions, out, models_info)
    captions = CAPTIONS | {"weights.png": _weights_caption(models_info or [])}
    held_out = evaluate(predictions, "test")
    prequential = evaluate(predictions, "train")
    runs = {p["run_id"]: p for p in predictions if p.get("run_id")}
    decks = Counter(p.get("params", {}).get("deck") for p in runs.values())
    splits = Counter(p.get("split") for p in runs.values())
    summary = (
        f"{len(runs)} runs ({splits.get('train', 0)} train, {splits.get('test', 0)} test) over "
        f"{', '.join(f'{_deck(d)} ({n})' for d, n in sorted(decks.items(), key=str))}; "
        f"{len({p['model'] for p in predictions})} models; "
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}."
    )
    sections = [
        (f"Held-out accuracy ({held_out.split} split)", held_out.to_markdown()),
        (
            "Prequential accuracy (train split: predict, score, then learn)",
            prequential.to_markdown().split("\n\nFor comparison")[0] + "\n",
        ),
    ]
    md = [f"# {title}", "", summary, ""]
    for heading, table in sections:
        md += [f"## {heading}", "", table]
    md += ["## Figures", ""]
    for fig in figures:
        md += [f"![{fig.stem}]({fig.name})", "", captions.get(fig.name, ""), ""]
    markdown = write_text(out / "report.md", "\n".join(md))
    page = write_text(out / "report.html", _html(title, summary, sections, figures, captions))
    return markdown, page


def _deck(name: Any) -> str:
    """A deck's name in the summary (one not UTF-8 escaped, :func:`readable`).

    >>> _deck("lj"), _deck("m\\udce9tal"), _deck(None)
    ('lj', 'm\\\\udce9tal', 'None')
    """
    return readable(str(name))


def _weights_caption(models_info: list[dict[str, Any]]) -> str:
    """The weights figure's caption: whose coefficients, on which features.

    >>> _weights_caption([{"name": "linear", "weights": {"a": 1.0}}, {"name": "knn"}])
    'Coefficients of linear (per feature, unscaled).'
    """
    drawn = [f"{m['name']} ({weight_unit(m)})" for m in models_info if drawn_weights(m)]
    names = ", ".join(drawn[:-1]) + " and " + drawn[-1] if len(drawn) > 1 else "".join(drawn)
    return f"Coefficients of {names}."


def _html(
    title: str,
    summary: str,
    sections: list[tuple[str, str]],
    figures: list[Path],
    captions: dict[str, str],
) -> str:
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(summary)}</p>"]
    for heading, table in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(_markdown_to_html(table))
    body.append("<h2>Figures</h2>")
    for fig in figures:
        data = base64.b64encode(fig.read_bytes()).decode("ascii")
        caption = html.escape(captions.get(fig.name, fig.stem))
        body.append(
            f'<figure><img alt="{fig.stem}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}figcaption{color:#555;font-size:0.9em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _markdown_to_html(text: str) -> str:
    """The tables and paragraphs :mod:`consumers.evaluate` writes, as HTML."""
    out, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if set(line.replace("|", "").strip()) <= set("-: "):
                continue
            rows.append(
                [html.escape(c.strip().replace("**", "")) for c in line.strip("|").split("|")]
            )
            continue
        if rows:
            head, *rest = rows
            out.append(
                "<table><tr>"
                + "".join(f"<th>{c}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
                + "</table>"
            )
            rows = []
        if line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)
