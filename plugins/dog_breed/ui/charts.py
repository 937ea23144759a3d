"""The page's charts, drawn by plotly from the view model.

Each function returns a plotly figure as a JSON-ready dict (``{"data": ..., "layout": ...}``);
the page hands it to ``Plotly.newPlot`` with the plotly.js that plotly's Python package ships
(served by the app, so the browser needs no internet).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from dog_breed.ui.view_model import RunView, TrainingCurves

GATE_COLORS = {"deploy": "#2e7d32", "hold": "#ef6c00", "not reached": "#757575"}
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "height": 340,
    "legend": {"orientation": "h", "y": -0.25},
}


def accuracy_over_runs(runs: Sequence[RunView]) -> dict[str, Any]:
    """Test accuracy of every run that trained, over time; colour = the gate's decision,
    a ring around the live model, the threshold as a dashed line."""
    import plotly.graph_objects as go

    scored = sorted((r for r in runs if r.test_accuracy is not None), key=lambda r: r.started)
    figure = go.Figure(
        go.Scatter(
            name="test accuracy",
            x=[r.started for r in scored],
            y=[r.test_accuracy for r in scored],
            mode="lines+markers",
            line={"color": "#90a4ae"},
            marker={
                "size": [16 if r.live else 11 for r in scored],
                "color": [GATE_COLORS.get(r.gate, "#757575") for r in scored],
                "line": {"width": [3 if r.live else 0 for r in scored], "color": "#1565c0"},
            },
            customdata=[
                [r.run_id, r.gate, "yes" if r.deployed else "no", " (live)" if r.live else ""] for r in scored
            ],
            hovertemplate=(
                "%{customdata[0]}%{customdata[3]}<br>test accuracy %{y:.4f}<br>"
                "gate: %{customdata[1]}, deployed: %{customdata[2]}<extra></extra>"
            ),
        )
    )
    thresholds = [r.threshold for r in scored if r.threshold is not None]
    if scored and thresholds:
        figure.add_trace(
            go.Scatter(
                name=f"gate threshold (latest {thresholds[-1]:.2f})",
                x=[r.started for r in scored],
                y=[r.threshold for r in scored],
                mode="lines",
                line={"dash": "dash", "color": "#c62828", "shape": "hv"},
                hoverinfo="skip",
            )
        )
    figure.update_layout(
        **_LAYOUT,
        title="Test accuracy per run (green: deployed by the gate, orange: held, ring: live)",
        xaxis={"title": "run started (UTC)", "type": "date"},
        yaxis={"title": "test accuracy", "range": [0, 1.05]},
    )
    if len(scored) == 1:  # plotly would zoom a lone point's axis to milliseconds
        only = datetime.fromisoformat(scored[0].started)
        figure.update_xaxes(range=[only - timedelta(hours=1), only + timedelta(hours=1)])
    return _as_dict(figure)


def training_curves(curves: TrainingCurves) -> dict[str, Any]:
    """Loss (left) and accuracy (right) per epoch, one line per SageMaker metric."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    for name, values in curves.series.items():
        column = 1 if name.endswith(":loss") else 2 if "accuracy" in name else None
        if column is None or name.endswith("best_accuracy"):
            continue  # images/s and the running best are not curves of this chart
        figure.add_trace(
            go.Scatter(name=name, x=curves.epochs, y=values, mode="lines+markers"), row=1, col=column
        )
    for name, value in curves.final_metrics.items():
        if name.startswith("test:"):
            column = 1 if name.endswith(":loss") else 2
            figure.add_hline(
                y=value,
                line={"dash": "dot", "color": "#6a1b9a"},
                annotation_text=f"{name} {value:.4f}",
                row=1,
                col=column,
            )
    figure.update_layout(**_LAYOUT)
    figure.update_xaxes(title_text="epoch", dtick=1)
    return _as_dict(figure)


def _as_dict(figure: Any) -> dict[str, Any]:
    # plotly's own encoder turns its numpy/typed arrays into plain JSON
    return json.loads(figure.to_json())
