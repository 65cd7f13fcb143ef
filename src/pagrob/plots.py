"""Writing matplotlib figures (PNG and PDF, atomically). No torch: the report steps use it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pagrob import io  # noqa: E402


def save(fig, png, pdf) -> None:
    """Write ``fig`` to ``png`` and ``pdf`` (either may be None), each atomically, and close it."""
    for path in (png, pdf):
        if path:
            io.atomic_write(
                path,
                lambda tmp, p=path: fig.savefig(
                    tmp, format=str(p).rsplit(".", 1)[1], dpi=150, bbox_inches="tight"
                ),
            )
    plt.close(fig)


def lam_axis(ax, lams) -> None:
    """A λ axis that shows λ = 0 (vanilla) beside logarithmically spaced λ: symmetric-log, linear
    below the smallest λ > 0, a labelled tick at every λ."""
    lams = sorted({float(v) for v in lams})
    positive = [v for v in lams if v > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
    ax.set_xticks(lams, ["0 (vanilla)" if v == 0 else f"{v:g}" for v in lams])
    ax.minorticks_off()
    ax.set_xlabel("λ")
