"""Matplotlib figures (PNG and PDF)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from pagrob import io  # noqa: E402
from pagrob.attacks import predict  # noqa: E402

REGION_COLORS = ListedColormap(["#c6dbef", "#fdd0a2"])
POINT_COLORS = ["#08519c", "#a63603"]


def save(fig, png, pdf) -> None:
    for path in (png, pdf):
        if path:
            io.atomic_write(path, lambda tmp, p=path: fig.savefig(tmp, format=str(p).rsplit(".", 1)[1], dpi=150, bbox_inches="tight"))
    plt.close(fig)


def decision_regions(panels, x_test, y_test, png, pdf, resolution: int = 400) -> None:
    """Fig. 3: one panel per (row, column) entry of ``panels`` = [[(title, model), ...], ...],
    the background coloured by the predicted class and the test points on top."""
    lo, hi = x_test.min(0).values, x_test.max(0).values
    pad = 0.15 * (hi - lo)
    g1 = torch.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    g2 = torch.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    grid = torch.cartesian_prod(g1, g2)
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for i, row in enumerate(panels):
        for j, (title, model) in enumerate(row):
            ax = axes[i][j]
            pred = predict(model, grid, batch_size=20000).view(resolution, resolution)
            ax.pcolormesh(g1, g2, pred.T, cmap=REGION_COLORS, shading="auto", vmin=0, vmax=1)
            for c in (0, 1):
                pts = x_test[y_test == c]
                ax.scatter(pts[:, 0], pts[:, 1], s=4, color=POINT_COLORS[c], label=f"class {c}")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("$x_1$")
            ax.set_ylabel("$x_2$")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save(fig, png, pdf)
