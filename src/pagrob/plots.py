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
                lambda tmp, p=path: fig.savefig(tmp, format=str(p).rsplit(".", 1)[1], dpi=150, bbox_inches="tight"),
            )
    plt.close(fig)
