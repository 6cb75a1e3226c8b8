"""How a result is displayed: which explanation (method, stage), which heads, which colours.

A :class:`Display` is chosen by a person (the app's controls) or a caller, and read by everything that draws
a result (:mod:`lens.render.overlays`, :mod:`lens.render.panels`, the export). "View" is kept for what the
models mean by it: one input view of a multiview model (MMViT).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.request import LensError

HEADS = ("mean", "max")


@dataclass(frozen=True)
class Display:
    """How to draw a result: which explanation (``method``; ``stage`` 0-based for per-stage methods,
    ``None`` = the last stage), which heads (``"mean"``, ``"max"`` or a 0-based head index), and the colours
    (a ``viz.COLORMAPS`` name and the opacity of the heat over the frames)."""

    method: str = "attention"
    stage: int | None = None
    head: str | int = "mean"
    colormap: str = "inferno"
    opacity: float = 0.8
    sinks: bool = False
    """Show sink keys (:mod:`lens.explain.sinks`) in attention views; by default they are hidden: a sink key
    takes attention whatever the clip shows, and its peak would wash out the rest of the map."""

    @classmethod
    def from_controls(cls, method: str, stage: float | None, head: str, **kw) -> Display:
        """The app's controls: ``stage`` as shown (1-based), ``head`` as a label (``"mean"``, ``"max"``,
        ``"head 3"``)."""
        try:
            s = None if stage in (None, "") else max(int(stage) - 1, 0)
        except (TypeError, ValueError):
            s = None  # a leftover value of another method's control
        if head in HEADS:
            h: str | int = head
        else:
            try:
                h = int(str(head).split()[-1]) - 1
            except ValueError:
                raise LensError(f"unknown heads choice {head!r}: use mean, max or 'head N'") from None
        return cls(method=method, stage=s, head=h, **kw)


DEFAULT_DISPLAY = Display()
"""The head-mean attention of the last stage, inferno, hot pixels at 80 % opacity."""


def head_labels(max_heads: int = 8) -> list[str]:
    """The head choices as the app shows them: mean, max, head 1 … head ``max_heads``."""
    return [*HEADS, *(f"head {i}" for i in range(1, max_heads + 1))]
