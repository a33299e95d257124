"""The PNG chart of the targets: each measured figure over its target, on a log scale."""

from __future__ import annotations

from pathlib import Path

from bench.targets import Target


def _scale(t: Target, v: float) -> float:
    """The headroom, bounded for the axis; a negative cost (noise) counts as far ahead."""
    return min(max(t.headroom(v) if v > 0 else 100.0, 0.01), 100.0)


def chart(rows: list[Target], png: Path, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = [t for t in rows if t.target is not None]
    values, lows, highs = [], [], []
    for t in judged:
        m = t.measured
        points = [_scale(t, v) for v in (m.median, m.lo, m.hi)]
        values.append(points[0])
        lows.append(points[0] - min(points))
        highs.append(max(points) - points[0])
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(judged) + 1.5))
    colours = ["tab:green" if t.met else "tab:red" for t in judged]
    ax.barh(range(len(judged)), values, xerr=[lows, highs], color=colours, capsize=3)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(judged)), [t.name for t in judged], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("measured / target (≥ 1 = target met; 'at most' targets inverted), log scale")
    ax.set_title("neuron-service: targets, same-run ratios" + (" (quick)" if quick else ""))
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
