"""Fig. 4: large-eps targeted PGD from fixed test images towards every class, one row per
model (vanilla and each PAG source), one block of rows per image."""

from __future__ import annotations

import torch

from pagrob import data, figures, models, report
from pagrob.settings import PicturesSettings
from pagrob.steps import _cli


def add_picture_options(p) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--models", nargs="+", required=True)
    _cli.add_settings(p, PicturesSettings)
    p.add_argument("--seed", type=int, default=0, help="the attack's random start (none: unused)")
    _cli.add_figure_outputs(p)


def attack_rows(args, s: PicturesSettings, device, label) -> tuple[data.Dataset, list]:
    """Per image, per model: (label, original, [image pushed towards each class])."""
    ds = data.load_prepared(args.data)
    images = list(s.images)
    bad = [i for i in images if not 0 <= i < len(ds.x_test)]
    if bad:
        raise ValueError(f"images {bad} outside the {len(ds.x_test)} test images")
    x = ds.x_test[images].to(device)
    rows = []
    loaded = [models.load_model(path, device) for path in args.models]
    grids = []
    for model, _ in loaded:
        g = torch.Generator().manual_seed(args.seed)
        grids.append(figures.targeted_towards_every_class(model, x, ds.num_classes, s.attack, g))
    for i, index in enumerate(images):
        for (_, meta), grid in zip(loaded, grids):
            rows.append((f"{label(meta)}\ntest #{index}", x[i], grid[i]))
    return ds, rows


def main() -> None:
    p = _cli.parser(__doc__)
    add_picture_options(p)
    args = p.parse_args()
    s = _cli.read_settings(args, PicturesSettings)
    device = _cli.setup(args, [args.out_png, args.out_pdf])

    def label(meta):
        name = report.method(meta["source"]).replace(" (adversarial training)", "\n(adv. trained)")
        return f"{name}\nλ={meta['lam']:g}" if meta.get("lam") else name

    ds, rows = attack_rows(args, s, device, label)
    a = s.attack
    title = f"{ds.name}: targeted L2 PGD towards each class (ε={a.eps:g}, {a.steps} steps)"
    figures.attack_grid(rows, ds.classes, title, args.out_png, args.out_pdf)
    _cli.log(f"{len(rows)} rows -> {args.out_png}, {args.out_pdf}")


if __name__ == "__main__":
    _cli.run(main)
