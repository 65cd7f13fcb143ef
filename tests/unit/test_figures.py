"""Figures: the targeted attacks of Figs. 1, 4 and 5 reach every class where a model allows it,
inside the eps-ball and the image box; the attack grid and Fig. 3 are written as PNG and PDF,
and Fig. 3's PDF stays small (rasterised decision regions) with its text still vector."""

import re
import zlib

import matplotlib.image
import pytest
import torch
from torch import nn

from pagrob import figures
from pagrob.attacks import Attack

C = 4


class Linear(nn.Module):
    """Logit c = 5 x_c on the first C pixels: class c wins where pixel c is the brightest of them,
    so every class is reachable from any image in [0, 1] by raising its pixel, lowering the rest."""

    def __init__(self):
        super().__init__()
        w = torch.zeros(C, 16)
        w[torch.arange(C), torch.arange(C)] = 5.0
        self.fc = nn.Linear(16, C)
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def images(n=3):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "attack", [Attack("l2", 1.5, 30), Attack("linf", 0.6, 30)], ids=["l2", "linf"]
)
def test_targeted_towards_every_class_reaches_each_class_inside_the_ball(attack):
    model, x = Linear(), images()
    out = figures.targeted_towards_every_class(
        model, x, C, attack, torch.Generator().manual_seed(1)
    )
    assert out.shape == (len(x), C, 1, 4, 4)
    with torch.no_grad():
        predicted = model(out.flatten(0, 1)).argmax(1).view(len(x), C)
    assert torch.equal(predicted, torch.arange(C).expand(len(x), C))  # row i, column c: class c
    delta = (out - x[:, None]).flatten(2)  # each result measured from its own image
    size = delta.abs().amax(2) if attack.norm == "linf" else delta.norm(dim=2)
    assert (size <= attack.eps * (1 + 1e-5)).all()
    assert out.min() >= 0 and out.max() <= 1
    # the same generator seed gives the same pictures (the random start comes from it)
    again = figures.targeted_towards_every_class(
        model, x, C, attack, torch.Generator().manual_seed(1)
    )
    assert torch.equal(out, again)


def test_targeted_attacks_stay_near_the_image_when_eps_is_small():
    model, x = Linear(), images(2)
    out = figures.targeted_towards_every_class(
        model, x, C, Attack("l2", 0.01, 5), torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert torch.equal(
            model(out.flatten(0, 1)).argmax(1).view(2, C), model(x).argmax(1)[:, None].expand(2, C)
        )


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def is_pdf(path):
    data = path.read_bytes()
    return data[:5] == b"%PDF-" and b"%%EOF" in data[-32:]


def test_attack_grid_writes_png_and_pdf(tmp_path):
    model, x = Linear(), images(2)
    out = figures.targeted_towards_every_class(
        model, x, C, Attack("l2", 1.5, 10), torch.Generator().manual_seed(0)
    )
    rows = [(f"model\ntest #{i}", x[i], out[i]) for i in range(len(x))]
    png, pdf = tmp_path / "grid.png", tmp_path / "sub" / "grid.pdf"
    figures.attack_grid(rows, [f"class {c}" for c in range(C)], "a title", png, pdf)
    assert is_png(png) and is_pdf(pdf)
    height, width, _ = matplotlib.image.imread(png).shape
    assert width > height > 50  # 5 columns, 2 rows
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "grid.pdf",
        "grid.png",
        "sub",
    ]  # no temporary files


# --- Fig. 3 ------------------------------------------------------------------------------------------


def pdf_streams(data: bytes):
    """The decompressed content of each (Flate-compressed) stream of a PDF."""
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            yield zlib.decompress(match.group(1))
        except zlib.error:
            yield match.group(1)


def pdf_text(data: bytes) -> str:
    """The strings a PDF shows with text operators (Tj, and TJ without its kerning numbers)."""
    shown = []
    for stream in pdf_streams(data):
        for m in re.finditer(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj|\[((?:[^\]\\]|\\.)*)\]\s*TJ", stream):
            parts = (
                [m.group(1)]
                if m.group(1) is not None
                else re.findall(rb"\(((?:[^()\\]|\\.)*)\)", m.group(2))
            )
            shown.append(b"".join(parts).decode("latin-1"))
    return "\n".join(shown)


def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))


def test_decision_regions_pdf_is_small_with_vector_text(tmp_path):
    """At the workflow's resolution (400 x 400 cells per panel) and its layout (2 models x 3
    seeds), the PDF stays under 1 MB: the regions are one raster image per panel, while the
    points, axes and titles stay vector."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(60, 2, generator=g) * 5 - 20, torch.randn(60, 2, generator=g) * 5 + 20]
    )
    y = torch.cat([torch.zeros(60), torch.ones(60)]).long()
    panels = [
        [(f"Vanilla, seed {s}", mlp(2 * s)), (f"PAG, seed {s}", mlp(2 * s + 1))] for s in range(3)
    ]
    png, pdf = tmp_path / "fig3.png", tmp_path / "fig3.pdf"
    figures.decision_regions(panels, x, y, png, pdf, resolution=400)
    assert is_png(png) and is_pdf(pdf)
    data = pdf.read_bytes()
    assert len(data) < 1_000_000, f"{len(data) / 1e6:.1f} MB"
    assert data.count(b"/Subtype /Image") == 6  # one raster per panel
    assert b"/Type /Font" in data  # text drawn with an embedded font, as text operators:
    text = pdf_text(data)
    assert all(f"Vanilla, seed {s}" in text and f"PAG, seed {s}" in text for s in range(3))
    assert "class 1" in text  # the legend
    content = b"".join(pdf_streams(data))
    assert (
        len(re.findall(rb"[\d.]+ [\d.]+ m\b", content)) > 100
    )  # vector paths: points, axes, ticks
