"""Matplotlib figures (PNG and PDF)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from pagrob.attacks import predict  # noqa: E402
from pagrob.plots import lam_axis, save  # noqa: E402

REGION_COLORS = ListedColormap(["#c6dbef", "#fdd0a2"])
POINT_COLORS = ["#08519c", "#a63603"]


def decision_regions(panels, x_test, y_test, png, pdf, resolution: int = 400, arrows=None) -> None:
    """Fig. 3: one panel per (row, column) entry of ``panels`` = [[(title, model), ...], ...],
    the background coloured by the predicted class and the test points on top.

    ``arrows``: None, or a function model -> (points [M, 2], directions [M, 2]), drawn as black
    arrows from the points (e.g. the unit margin gradients at some test points). A direction is
    one in data coordinates (it keeps its angle to the data's line however the axes are scaled);
    its length is drawn as a fraction of the panel's width (1: a 20th)."""
    lo, hi = x_test.min(0).values, x_test.max(0).values
    pad = 0.15 * (hi - lo)
    # cpu: a plot of CPU models and points
    g1 = torch.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)  # cpu: see above
    g2 = torch.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)  # cpu: see above
    grid = torch.cartesian_prod(g1, g2)
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for i, row in enumerate(panels):
        for j, (title, model) in enumerate(row):
            ax = axes[i][j]
            pred = predict(model, grid, batch_size=20000).view(resolution, resolution)
            ax.pcolormesh(
                g1, g2, pred.T, cmap=REGION_COLORS, shading="auto", vmin=0, vmax=1, rasterized=True
            )
            for c in (0, 1):
                pts = x_test[y_test == c]
                ax.scatter(pts[:, 0], pts[:, 1], s=4, color=POINT_COLORS[c], label=f"class {c}")
            if arrows is not None:
                at, direction = (t.detach().cpu().numpy() for t in arrows(model))
                ax.quiver(
                    at[:, 0],
                    at[:, 1],
                    direction[:, 0],
                    direction[:, 1],
                    color="black",
                    angles="xy",
                    scale_units="width",
                    scale=20,
                    width=0.004,
                    zorder=3,
                )
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("$x_1$")
            ax.set_ylabel("$x_2$")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save(fig, png, pdf)


def targeted_towards_every_class(
    model, x, num_classes: int, attack, generator=None
) -> torch.Tensor:
    """[n, C, ...]: for every image, a targeted PGD towards each class (large eps: what the
    model's gradients point at)."""
    from pagrob.attacks import pgd

    out = []
    for image in x:
        batch = image.unsqueeze(0).expand(num_classes, *image.shape).contiguous()
        targets = torch.arange(num_classes, device=x.device)
        out.append(pgd(model, batch, targets, attack, target=targets, generator=generator))
    return torch.stack(out)


def _show(ax, image: torch.Tensor) -> None:
    image = image.detach().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_attack_grid(fig_or_subfig, rows, classes: list[str]) -> None:
    """``rows`` = [(label, original image, [C images]), ...]: one row each, the original first,
    then the image pushed towards every class (columns titled by class)."""
    axes = fig_or_subfig.subplots(len(rows), len(classes) + 1, squeeze=False)
    for i, (label, original, adversarial) in enumerate(rows):
        _show(axes[i][0], original)
        axes[i][0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        for j, image in enumerate(adversarial):
            _show(axes[i][j + 1], image)
    axes[0][0].set_title("original", fontsize=8)
    for j, name in enumerate(classes):
        axes[0][j + 1].set_title(name, fontsize=8)


def attack_grid(rows, classes: list[str], title: str, png, pdf) -> None:
    fig = plt.figure(
        figsize=(0.85 * (len(classes) + 1) + 1.5, 0.85 * len(rows) + 0.6), layout="constrained"
    )
    draw_attack_grid(fig, rows, classes)
    fig.suptitle(title, fontsize=9)
    save(fig, png, pdf)


def lambda_ablation(table, rows, classes: list[str], title: str, png, pdf) -> None:
    """Fig. 5: accuracy against lambda, the vanilla model at λ = 0 (ours solid with the 95%
    interval as error bars, the paper's dashed), and the targeted attacks of each lambda's model
    below."""
    fig = plt.figure(figsize=(max(8.0, 0.85 * (len(classes) + 1) + 1.5), 3.2 + 0.85 * len(rows)))
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.2, 0.85 * len(rows)])
    ax = top.subplots()
    colors = {"clean": "C0", "linf": "C1", "l2": "C2"}
    names = {"clean": "clean", "linf": "PGD L∞", "l2": "PGD L2"}
    for metric, g in table.groupby("metric", sort=False):
        g = g.sort_values("lam")
        ax.errorbar(
            g["lam"],
            g["mean"],
            yerr=g["half"].fillna(0),
            marker="o",
            color=colors.get(metric),
            label=f"{names.get(metric, metric)} (ours)",
        )
        if g["paper"].notna().any():
            ax.plot(
                g["lam"],
                g["paper"],
                "--",
                marker="x",
                color=colors.get(metric),
                label=f"{names.get(metric, metric)} (paper)",
            )
    lam_axis(ax, table["lam"])
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title, fontsize=9)
    draw_attack_grid(bottom, rows, classes)
    save(fig, png, pdf)
