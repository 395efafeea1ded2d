"""PNG plots of a training run: the learning curve and one sample's spikes and readouts.

Pure functions: data in, one PNG out, the written Path returned. They draw on a
`matplotlib.figure.Figure` with its own `FigureCanvasAgg`, never through pyplot, so they neither
select nor change the user's matplotlib backend, register no global figure (nothing to close, no
figure left open) and can run from worker threads or inside a notebook. Each PNG is written to a
temporary file in the target folder and moved into place with os.replace, so a reader never sees
half a file; the folder is created when missing.

    plot_learning_curve([{"iteration": 1, "loss": 0.9, "accuracy": 0.4}, ...], "run/curve.png")
    plot_sample("run/sample.png", dt=1.0, input_times=..., input_senders=..., n_in=40, ...)
"""
from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["plot_learning_curve", "plot_sample"]

DPI = 110
_RASTER_MARKER = dict(linestyle="none", marker=".", markersize=1.5, markeredgewidth=0, rasterized=True)


# ---------------------------------------------------------------------------------------------
# Figure and atomic PNG output
# ---------------------------------------------------------------------------------------------

def _figure(width: float, height: float):
    """A Figure attached to its own Agg canvas (no pyplot, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib ships with tonic
        raise ImportError("plotting needs matplotlib (pip install matplotlib)") from exc
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig, n_rows: int, *, left: float, right: float, top: float, bottom: float, gap: float) -> None:
    """Fixed margins and gaps between stacked panels, in inches. (A layout engine would measure every
    label first; fixed margins keep a plot at about half the time, which matters when a training
    loop writes plots as it goes.)"""
    width, height = fig.get_size_inches()
    panels = height - top - bottom - gap * (n_rows - 1)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        hspace=gap / (panels / n_rows) if n_rows > 1 else 0.0)


def _save_png(fig, path) -> Path:
    """Render fig to path atomically: a temporary file beside it, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        # "xb" honours the umask (unlike mkstemp's 0600) and never clobbers an existing file.
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=DPI)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        fig.clear()      # drop the artists now; the figure is not registered anywhere else
    return path


# ---------------------------------------------------------------------------------------------
# Learning curve
# ---------------------------------------------------------------------------------------------

def _as_float(value: Any) -> float:
    """float, with None / non-numbers / inf as nan (a gap in the curve)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _moving_average(y: np.ndarray, width: int) -> np.ndarray:
    """Centered running mean of width points that skips nan values."""
    ok = np.isfinite(y)
    kernel = np.ones(width)
    total = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plot_learning_curve(metrics: Sequence[Mapping[str, Any]], path) -> Path:
    """Loss against iteration (log y axis when every finite loss is > 0) and, when any entry has an
    `accuracy`, a second panel with the accuracy (fraction correct, 0..1). metrics: per-iteration
    dicts with `iteration` (int; the list index when missing), `loss` and optionally `accuracy`
    (None or missing = not measured). Entries are drawn in iteration order. Returns the path."""
    from matplotlib.ticker import MaxNLocator

    rows = sorted((int(m.get("iteration", i)), _as_float(m.get("loss")), _as_float(m.get("accuracy")))
                  for i, m in enumerate(metrics))
    it = np.array([r[0] for r in rows], dtype=float)
    loss = np.array([r[1] for r in rows], dtype=float)
    acc = np.array([r[2] for r in rows], dtype=float)
    has_acc = bool(np.isfinite(acc).any())
    n = len(rows)
    marker = "o" if n <= 60 else None

    fig = _figure(8.0, 6.0 if has_acc else 4.0)
    _margins(fig, 2 if has_acc else 1, left=0.9, right=0.25, top=0.35, bottom=0.55, gap=0.35)
    if has_acc:
        ax_loss, ax_acc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    else:
        ax_loss, ax_acc = fig.subplots(1, 1), None

    finite = loss[np.isfinite(loss)]
    if n >= 50:
        ax_loss.plot(it, loss, color="C0", alpha=0.35, linewidth=0.8, label="loss")
        width = max(5, n // 25)
        ax_loss.plot(it, _moving_average(loss, width), color="C0", linewidth=1.8,
                     label=f"running mean ({width} iterations)")
        ax_loss.legend(loc="upper right", fontsize="small")
    else:
        ax_loss.plot(it, loss, color="C0", marker=marker, markersize=4, linewidth=1.5, label="loss")
    if finite.size and (finite > 0).all():
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss" + (" (log scale)" if ax_loss.get_yscale() == "log" else ""))
    ax_loss.grid(True, which="major", alpha=0.3)
    if n == 0:
        ax_loss.text(0.5, 0.5, "no iterations recorded", ha="center", va="center", transform=ax_loss.transAxes)
        ax_loss.set_yticks([])

    title = "Learning curve"
    if n:
        last = f"{loss[-1]:.4g}" if np.isfinite(loss[-1]) else "n/a"
        title += f" — {n} iteration{'s' if n != 1 else ''}, last loss {last}"
        if finite.size:
            title += f", best {finite.min():.4g}"
    ax_loss.set_title(title, fontsize="medium")

    if ax_acc is not None:
        ok = np.isfinite(acc)
        ax_acc.plot(it[ok], acc[ok], color="C2", marker=marker, markersize=4, linewidth=1.5,
                    label="accuracy")
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.set_ylabel("accuracy (fraction correct)")
        ax_acc.grid(True, alpha=0.3)
        last_acc = acc[ok][-1]
        ax_acc.set_title(f"accuracy: last {last_acc:.3f} (error {1 - last_acc:.3f}), best {acc[ok].max():.3f}",
                         fontsize="small")
        bottom = ax_acc
    else:
        bottom = ax_loss
    bottom.set_xlabel("iteration")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    if n and it.min() == it.max():          # one iteration: a readable integer axis around it
        bottom.set_xlim(it[0] - 1, it[0] + 1)
    elif n == 0:
        bottom.set_xticks([])
    return _save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# One sample: input raster, recurrent raster, readout vs target
# ---------------------------------------------------------------------------------------------

def _raster(ax, times, senders, n: int, label: str) -> tuple[float, float]:
    """Dots for spikes; returns the first and last spike time (nan when there is none)."""
    from matplotlib.ticker import MaxNLocator

    times = np.asarray(times, dtype=float).ravel()
    senders = np.asarray(senders).ravel()
    if times.shape != senders.shape:
        raise ValueError(f"{label}: {times.size} spike times but {senders.size} senders")
    if times.size:
        ax.plot(times, senders, color="k", **_RASTER_MARKER)
    else:
        ax.text(0.5, 0.5, "no spikes", ha="center", va="center", color="0.4", transform=ax.transAxes)
    if n > 0:
        ax.set_ylim(-0.5, n - 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    elif not times.size:
        ax.set_yticks([])
    ax.set_ylabel(f"{label}\nneuron")
    ax.set_title(f"{label} spikes: {times.size} from {n} neurons", fontsize="small", loc="left")
    return (float(times.min()), float(times.max())) if times.size else (math.nan, math.nan)


def _window_spans(times: np.ndarray, window: np.ndarray, dt: float) -> list[tuple[float, float]]:
    """(start, width) of every run of window > 0, each sample covering +-dt/2 around its time."""
    on = np.asarray(window, dtype=float) > 0
    if not on.any():
        return []
    edges = np.diff(np.r_[0, on.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    half = dt / 2
    return [(times[a] - half, times[b] - times[a] + dt) for a, b in zip(starts, stops)]


def _colors(n: int):
    from matplotlib import colormaps
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def _as_traces(name: str, a, steps: int) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != steps:
        raise ValueError(f"{name} must be (T, n_out) with T = len(readout_times) = {steps}, got {a.shape}")
    return a


def plot_sample(path, *, dt: float, input_times, input_senders, n_in: int, rec_times, rec_senders, n_rec: int,
                readout_times, readout, target, window=None, title: str = "") -> Path:
    """Three panels over one time axis (ms): input raster, recurrent raster, readout (solid) against
    target (dashed, same color per output), with the learning window (window > 0, one value per
    readout time; each step shaded over +-dt/2) shaded. Senders are 0-based indices into their
    population. readout and target: (T, n_out) (or (T,) for one output) with T = len(readout_times).
    Returns the path."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    dt = float(dt)
    t_out = np.asarray(readout_times, dtype=float).ravel()
    steps = t_out.size
    y = _as_traces("readout", readout, steps)
    tgt = _as_traces("target", target, steps)
    if tgt.shape != y.shape:
        raise ValueError(f"target {tgt.shape} and readout {y.shape} must have the same shape")
    n_out = y.shape[1]
    if window is not None:
        window = np.asarray(window, dtype=float).ravel()
        if window.size != steps:
            raise ValueError(f"window has {window.size} values, readout_times {steps}")

    n_legend = 3 + (n_out if 1 < n_out <= 20 else 0)      # readout, target, window, one per output
    fig = _figure(10.0, 8.0)
    _margins(fig, 3, left=0.95, right=1.45 if n_legend <= 14 else 2.0, top=0.7 if title else 0.35,
             bottom=0.55, gap=0.35)
    ax_in, ax_rec, ax_out = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1.0, 1.6, 1.4]})
    span_in = _raster(ax_in, input_times, input_senders, int(n_in), "input")
    span_rec = _raster(ax_rec, rec_times, rec_senders, int(n_rec), "recurrent")

    colors = _colors(n_out)
    lw = 1.2 if n_out <= 10 else 0.8
    for k in range(n_out):
        ax_out.plot(t_out, y[:, k], color=colors[k], linewidth=lw)
        ax_out.plot(t_out, tgt[:, k], color=colors[k], linewidth=lw, linestyle="--", alpha=0.8)
    handles = [Line2D([], [], color="0.2", linewidth=1.2, label="readout"),
               Line2D([], [], color="0.2", linewidth=1.2, linestyle="--", label="target")]
    if window is not None:
        spans = _window_spans(t_out, window, dt)
        if spans:
            ax_out.broken_barh(spans, (0, 1), transform=ax_out.get_xaxis_transform(),
                               facecolor="gold", alpha=0.25, edgecolor="none", zorder=0)
            handles.append(Patch(facecolor="gold", alpha=0.25, label="learning window"))
    if 1 < n_out <= 20:
        handles += [Line2D([], [], color=colors[k], linewidth=2, label=str(k)) for k in range(n_out)]
    ax_out.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="x-small",
                  frameon=False, ncol=1 if n_legend <= 14 else 2, handlelength=1.6,
                  title="output" if 1 < n_out <= 20 else None, title_fontsize="x-small")
    ax_out.set_ylabel("readout")
    ax_out.set_xlabel("time (ms)")
    ax_out.set_title(f"{n_out} readout{'s' if n_out != 1 else ''} vs target", fontsize="small", loc="left")
    ax_out.grid(True, alpha=0.3)
    if steps == 0:
        ax_out.text(0.5, 0.5, "no readout samples", ha="center", va="center", color="0.4",
                    transform=ax_out.transAxes)

    # Time axis: everything drawn, plus half a step either side.
    known = [t for t in (*span_in, *span_rec, *((t_out.min(), t_out.max()) if steps else ())) if math.isfinite(t)]
    if known:
        lo, hi = min(known) - dt / 2, max(known) + dt / 2
        if hi > lo:
            ax_out.set_xlim(lo, hi)
    if title:
        fig.suptitle(title)
    return _save_png(fig, path)
