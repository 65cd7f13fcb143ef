"""Classifiers. Every model takes inputs in pixel space ([0, 1]) and normalises inside forward,
so that attacks and input-gradients all live in pixel space."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ARCHITECTURES = ("mlp", "small_cnn", "mnist_cnn", "resnet18", "resnet50")


class _ReLU(torch.autograd.Function):
    """ReLU whose backward multiplies by a saved constant mask.

    Values and gradients are those of ``F.relu``. The difference is in the graph that a
    ``create_graph=True`` backward builds: ``F.relu``'s backward keeps an edge to its input
    (through which a double backward sends zeros, the second derivative, into the whole forward
    graph); this one's depends on the incoming gradient only. The PAG step's double backward
    then never walks the forward graph (see ``pag.py``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0] > 0)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask


def relu(x: Tensor) -> Tensor:
    # Where no graph is built (evaluation, black-box queries: Square's 5,000 per image), the
    # plain clamp: same values, without the autograd.Function's overhead and saved mask (a
    # third of a digits CNN's forward time). A property of the tensor, not of its values: no
    # host synchronisation.
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.clamp(min=0)
    return _ReLU.apply(x)


def avg_pool2(x: Tensor) -> Tensor:
    """2x2 average pooling as the mean of the four strided sub-grids: its backward, unlike
    ``F.avg_pool2d``'s, keeps no edge to the input (same reason as :func:`relu`). (A mean over
    a reshaped view gives the same values but reduces over strided dimensions, slower on a
    CPU.)"""
    return (
        x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]
    ) * 0.25


class Normalize(nn.Module):
    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


class Classifier(nn.Module):
    """``net(normalize(x))``; the state dict carries the normalisation statistics."""

    def __init__(self, net: nn.Module, mean: Tensor, std: Tensor):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))


class MLP(nn.Module):
    """The toy experiment's 2 -> 32 -> 2 network with ReLU (Appendix C.1)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(relu(self.fc1(x.flatten(1))))


class SmallCNN(nn.Module):
    """A small convolutional network: two 3x3 convolutions, 2x2 average pooling, and a fully
    connected head on the flattened feature map. For 8x8 digits (the offline demo, small_cnn)
    one pooling after the convolutions; for 28x28 images ((Fashion-)MNIST, mnist_cnn) a pooling
    after each, the field's usual conv-pool-conv-pool-fc shape (a quarter of the second
    convolution's cost; 0.2M parameters at width 16).

    No BatchNorm and no global pooling: on the demo data both made the input-gradients much
    harder to align (global pooling discards where a pattern is; the PAG targets are spatial
    templates), and BatchNorm's double backward is the costliest part of a PAG step on a CPU.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 16,
        size: int = 8,
        hidden: int = 128,
        pools: int = 1,
    ):
        super().__init__()
        if pools not in (1, 2):
            raise ValueError(f"pools is 1 (after the convolutions) or 2 (after each), not {pools}")
        self.pools = pools
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * (size // 2**pools) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = relu(self.conv1(x))
        if self.pools == 2:
            out = avg_pool2(out)
        out = avg_pool2(relu(self.conv2(out)))
        return self.fc2(relu(self.fc1(out.flatten(1))))


class BasicBlock(nn.Module):
    expansion = 1
    pag_cut = True  # pag.py's segmented strategy cuts the graph at a block's input

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        # layer names follow the robustness library's, so that its checkpoints map onto these
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4
    pag_cut = True

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = relu(self.bn1(self.conv1(x)))
        out = relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet in the CIFAR form: 3x3 stride-1 stem, no max-pool, adaptive average pool (so the
    same network runs on 32 px CIFAR-10 and 96 px STL-10 images). ``widths``: the four stages'
    (the paper's by default; narrower ones make small test networks of the same form)."""

    def __init__(
        self,
        block,
        num_blocks: list[int],
        in_channels: int,
        num_classes: int,
        widths=(64, 128, 256, 512),
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(out.mean((2, 3)))  # global average pooling


def build_model(
    arch: str, input_shape: tuple[int, ...], num_classes: int, mean: Tensor, std: Tensor
) -> Classifier:
    if arch == "mlp":
        net = MLP(math.prod(input_shape), num_classes)
    elif arch == "small_cnn":
        net = SmallCNN(input_shape[0], num_classes, size=input_shape[-1])
    elif arch == "mnist_cnn":
        net = SmallCNN(input_shape[0], num_classes, size=input_shape[-1], pools=2)
    elif arch == "resnet18":
        net = ResNet(BasicBlock, [2, 2, 2, 2], input_shape[0], num_classes)
    elif arch == "resnet50":  # the CIFAR ResNet-50 of MadryLab's robustness library (teachers)
        net = ResNet(Bottleneck, [3, 4, 6, 3], input_shape[0], num_classes)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    return Classifier(net, mean, std)


# --- Model files ----------------------------------------------------------------------------------

MODEL_KEYS = ("state_dict", "arch", "input_shape", "num_classes")


def save_model(path, model: Classifier, arch: str, input_shape, num_classes: int, **meta) -> None:
    """A plain state dict plus metadata (architecture, settings, seed, per-epoch history,
    library versions) in one file, and the metadata again beside it as readable JSON
    (``model.json`` next to ``model.pt``)."""
    import json
    from pathlib import Path

    from pagrob import io

    info = {
        "arch": arch,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "versions": io.versions(),
        "environment": io.environment(),
        **meta,
    }
    io.save(
        {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **info}, path
    )
    io.write_text(json.dumps(info, indent=1, default=str) + "\n", Path(path).with_suffix(".json"))


def load_model(path, device="cpu") -> tuple[Classifier, dict]:
    """Rebuild a model saved by :func:`save_model` (``weights_only=True``: no pickled code)."""
    from pagrob import io

    meta = io.load(path, "model file", MODEL_KEYS)
    sd = meta["state_dict"]
    if not isinstance(sd, dict) or "normalize.mean" not in sd or "normalize.std" not in sd:
        raise ValueError(f"model file {path} has no normalisation statistics in its state dict")
    model = build_model(
        meta["arch"],
        tuple(meta["input_shape"]),
        meta["num_classes"],
        sd["normalize.mean"],
        sd["normalize.std"],
    )
    load_state_dict_checked(model, sd, f"model file {path}", meta["arch"])
    return model.to(device).eval(), meta


def load_state_dict_checked(model: nn.Module, sd: dict, what: str, arch: str) -> None:
    """``load_state_dict`` that names the missing and unexpected keys and shape mismatches."""
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{what} does not hold a state dict of tensors")
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or shapes:

        def head(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        raise ValueError(
            f"{what} does not fit architecture {arch!r}: "
            f"missing keys [{head(missing)}], unexpected keys [{head(unexpected)}], "
            f"shape mismatches [{head(shapes)}]. Check the architecture named for it."
        )
    model.load_state_dict(sd)


# --- Checkpoints from elsewhere (e.g. MadryLab's robust CIFAR-10 ResNet-50s) ----------------------

WRAPPERS = ("model", "state_dict", "net")  # keys under which files often nest the state dict


def import_state_dict(
    obj, arch: str, input_shape, num_classes: int, mean: Tensor, std: Tensor, what: str
) -> Classifier:
    """Build ``arch`` from a foreign state dict, handling key prefixes and normalisation.

    Accepted: a state dict, or a dict holding one under ``model``/``state_dict``/``net``. Keys
    of ``attacker.`` copies (the robustness library keeps two) are dropped, ``module.`` and
    ``model.`` prefixes stripped; ``normalizer.new_mean/new_std`` (or ``normalize.mean/std``)
    must agree with the declared ``mean``/``std``, which the model then uses.
    """
    sd = obj
    for key in WRAPPERS:
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if (
        not isinstance(sd, dict)
        or not sd
        or not all(isinstance(v, torch.Tensor) for v in sd.values())
    ):
        raise ValueError(
            f"{what} is not a state dict (a dict of tensors, possibly under 'model' or "
            "'state_dict'); save model.state_dict() instead"
        )
    weights, norm = {}, {}
    for key, value in sd.items():
        k = key
        for prefix in ("module.",):
            k = k.removeprefix(prefix)
        if k.startswith("attacker."):
            continue
        if k.startswith(("normalizer.", "normalize.")):
            norm[k.split(".", 1)[1]] = value.flatten()
            continue
        k = k.removeprefix("model.").removeprefix("net.")
        weights[f"net.{k}"] = value
    stored_mean = norm.get("new_mean", norm.get("mean"))
    stored_std = norm.get("new_std", norm.get("std"))
    for name, stored, declared in (("mean", stored_mean, mean), ("std", stored_std, std)):
        if stored is not None and (
            stored.shape != declared.shape
            or not torch.allclose(stored.float(), declared.float(), atol=1e-4)
        ):
            raise ValueError(
                f"{what} normalises with {name} {stored.tolist()}, but the config declares "
                f"{declared.tolist()}; declare the checkpoint's own normalisation"
            )
    model = build_model(arch, input_shape, num_classes, mean, std)
    weights["normalize.mean"] = mean.float()
    weights["normalize.std"] = std.float()
    load_state_dict_checked(model, weights, what, arch)
    return model


def import_file(
    path, arch: str, input_shape, num_classes: int, mean: Tensor, std: Tensor, what: str
) -> Classifier:
    """:func:`import_state_dict` of a checkpoint file from elsewhere, read safely
    (``weights_only=True``: a file that pickles code is refused, never run)."""
    from pagrob import io

    raw = io.load(path, what, foreign=True)
    return import_state_dict(raw, arch, input_shape, num_classes, mean, std, f"{what} {path}")
