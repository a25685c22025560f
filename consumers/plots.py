"""Figures (PNG, matplotlib) from the predictions a model service published.

- ``predicted_vs_actual.png``: one panel per model, test runs over train runs, y = x; a
  prediction beyond the axes (:func:`scatter_range`) is drawn at their edge.
- ``learning_curves.png``: rolling MAE against records learned, every model on one figure.
- ``error_by_deck.png`` and ``error_by_size.png``: the best model's held-out error.
- ``weights.png``: the coefficients of the linear models, when the service offers them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from consumers.evaluate import evaluate
from consumers.history import history_rows
from consumers.output import readable, replaced

# the scatter's axes reach at most this factor beyond the actual times (see scatter_range)
SPAN = 100.0


def plot_all(
    predictions: list[dict[str, Any]], out: Path, models_info: list[dict[str, Any]] | None = None
) -> list[Path]:
    """Write every figure the data allows into ``out``; return their paths (none when no
    prediction is of a finished run yet: answers to questions have no actual time)."""
    import matplotlib

    matplotlib.use("Agg")
    predictions = [p for p in predictions if p.get("actual_wall_seconds")]
    if not predictions:
        return []
    written = [
        _predicted_vs_actual(predictions, out / "predicted_vs_actual.png"),
        _learning_curves(predictions, out / "learning_curves.png"),
    ]
    best = evaluate(predictions).best
    if best is not None:
        written += [
            _error_by(predictions, best, "deck", out / "error_by_deck.png"),
            _error_by(predictions, best, "cells", out / "error_by_size.png"),
        ]
    weighted = [m for m in models_info or [] if drawn_weights(m)]
    if weighted:
        written.append(_weights(weighted, out / "weights.png"))
    return [path for path in written if path is not None]


def _models(predictions: list[dict[str, Any]]) -> list[str]:
    return sorted({p["model"] for p in predictions})


def _save(fig: Any, path: Path) -> Path:
    """``fig`` as PNG at ``path``, whole or not at all, and closed."""
    import matplotlib.pyplot as plt

    with replaced(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def scatter_range(actual: list[float], predicted: list[float]) -> tuple[float, float]:
    """The limits of both log axes of predicted against actual: every actual time and every
    positive prediction with a margin, but at most :data:`SPAN` times beyond the actual
    times. One diverged prediction (a model's output may be any finite number) would
    otherwise stretch every model's panel to it, or past what matplotlib can draw.

    >>> scatter_range([1.0, 10.0], [2.0, 8.0])
    (0.7, 14.0)
    >>> scatter_range([1.0, 10.0], [0.0, 1e300])
    (0.7, 1000.0)
    """
    values = actual + [v for v in predicted if v > 0]
    low = max(min(values) * 0.7, min(actual) / SPAN)
    high = min(max(values) * 1.4, max(actual) * SPAN)
    return low, high


def _predicted_vs_actual(predictions: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    models = _models(predictions)
    cols = min(3, len(models))
    rows = (len(models) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    known = predictions  # each of a finished run (plot_all keeps no others)
    low, high = scatter_range(
        [p["actual_wall_seconds"] for p in known], [p["predicted_wall_seconds"] for p in known]
    )
    for ax, model in zip(axes.flat, models, strict=False):
        for split, style in (("train", {"c": "0.75", "s": 10}), ("test", {"c": "C3", "s": 22})):
            pts = [p for p in known if p["model"] == model and p.get("split") == split]
            ax.scatter(
                [p["actual_wall_seconds"] for p in pts],
                [min(max(p["predicted_wall_seconds"], low), high) for p in pts],
                label=f"{split} ({len(pts)})",
                **style,
            )
        ax.plot([low, high], [low, high], "k--", lw=1, label="y = x")
        ax.set(
            xscale="log",
            yscale="log",
            xlim=(low, high),
            ylim=(low, high),
            title=model,
            xlabel="actual wall time (s)",
            ylabel="predicted (s)",
        )
        ax.legend(fontsize=8, loc="upper left")
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    fig.suptitle(
        "Predicted vs actual wall time (each prediction made before the model learned the run)"
    )
    fig.tight_layout()
    return _save(fig, path)


def _learning_curves(predictions: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    rows = [r for r in history_rows(predictions) if r["split"] == "train"]
    if not rows:  # test runs only: nothing was learned
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model in _models(predictions):
        mine = [r for r in rows if r["model"] == model]
        learned = learned_axis([r["learned"] for r in mine])
        ax.plot(learned, [r["rolling_mae"] for r in mine], label=model)
    _error_scale(ax, [r["rolling_mae"] for r in rows])
    ax.set(
        xlabel="records learned",
        ylabel="rolling MAE over 20 runs (s)",
        title="Learning curves: prequential error (predict, then learn)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def learned_axis(versions: list[int]) -> list[int]:
    """Where a model's train predictions go on the learning curves, given the records it
    had learned before each (``model_version``, in the order they were made): one more for
    each, from the first one's. With several runs partitions every partition's shard of the
    model counts from 0, and their versions, interleaved, drew the curve back and forth.

    >>> learned_axis([0, 0, 1, 1, 2])  # two shards
    [0, 1, 2, 3, 4]
    >>> learned_axis([500, 501, 502])  # one shard, a history that starts late
    [500, 501, 502]
    """
    first = versions[0] if versions else 0
    return list(range(first, first + len(versions)))


def _error_scale(ax: Any, errors: list[float]) -> None:
    """A log axis for ``errors``; where some are 0 (a model that predicted its last runs
    exactly), a log axis would drop them: symmetric log, linear below the smallest error
    above 0, or linear when there is none."""
    positive = [e for e in errors if e > 0]
    if len(positive) == len(errors):
        ax.set_yscale("log")
    elif positive:
        ax.set_yscale("symlog", linthresh=min(positive))


def _error_by(predictions: list[dict[str, Any]], model: str, key: str, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    test = [
        p
        for p in predictions
        if p["model"] == model and p.get("split") == "test" and p.get("actual_wall_seconds")
    ]
    if not test:
        return None
    groups: dict[Any, list[float]] = defaultdict(list)
    for p in test:
        params = p.get("params", {})
        group = (
            params.get("deck")
            if key == "deck"
            else (params.get("x", 1) * params.get("y", 1) * params.get("z", 1))
        )
        error = abs(p["predicted_wall_seconds"] - p["actual_wall_seconds"])
        groups[group].append(100 * error / p["actual_wall_seconds"])
    labels = sorted(groups, key=str) if key == "deck" else sorted(groups)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot([groups[g] for g in labels], tick_labels=[readable(str(g)) for g in labels])
    ax.set(
        xlabel="deck" if key == "deck" else "replicated cells (x·y·z)",
        ylabel="absolute error (% of actual)",
        title=f"{model}: held-out error by {'deck' if key == 'deck' else 'size'} "
        f"({len(test)} test runs)",
    )
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)


def drawn_weights(info: dict[str, Any]) -> dict[str, float]:
    """The weights of a ``GET /models`` entry that are numbers: one that overflowed is null
    there (JSON has no infinity or NaN), and no bar.

    >>> drawn_weights({"weights": {"a": 1.5, "b": None}}), drawn_weights({"name": "knn"})
    ({'a': 1.5}, {})
    """
    weights = info.get("weights") or {}
    return {
        k: v
        for k, v in weights.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def weight_unit(info: dict[str, Any]) -> str:
    """What one of a model's weights multiplies, from its ``GET /models`` entry.

    >>> weight_unit({"spec": {"scale": True}}), weight_unit({"spec": {"scale": False}})
    ('per standardised feature', 'per feature, unscaled')
    """
    scaled = bool((info.get("spec") or {}).get("scale"))
    return "per standardised feature" if scaled else "per feature, unscaled"


def _weights(models: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.5), squeeze=False)
    for ax, info in zip(axes.flat, models, strict=True):
        weights = sorted(drawn_weights(info).items(), key=lambda kv: abs(kv[1]))
        ax.barh([k for k, _ in weights], [v for _, v in weights], color="C0")
        ax.set(title=f"{info['name']}: coefficients", xlabel=f"weight ({weight_unit(info)})")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _save(fig, path)
