"""Import a published checkpoint (e.g. the authors' ResNet-18s) into this project's model-file
format, so that the steps that evaluate our models evaluate it the same way.

The checkpoint is read safely (``weights_only=True``); a state dict saved from a
``torch.nn.DataParallel`` wrapper (keys ``module.*``) is accepted; ``--mean``/``--std`` are the
normalisation the network was trained with (the authors': 0.5 and 0.5 per channel), which the
imported model applies inside its forward, so that it takes pixels in [0, 1] like ours.

Its identity in every table and CSV is ``source = external:<name>``; ``claims`` (the source it
says it was trained with) is what the external table compares it with.
"""

from __future__ import annotations

import torch

from pagrob import data, io, models, sources
from pagrob.steps import _cli

#: the ``source`` of an imported model: external:<name>
EXTERNAL_PREFIX = "external:"


def parser():
    p = _cli.parser(__doc__)
    p.add_argument(
        "--data", required=True, help="prepared dataset file (its input shape and classes)"
    )
    p.add_argument("--checkpoint", required=True, help="the published state dict")
    p.add_argument("--arch", required=True, choices=models.ARCHITECTURES)
    p.add_argument(
        "--mean",
        required=True,
        type=_cli.float_list,
        help="normalisation mean per channel, e.g. '0.5 0.5 0.5'",
    )
    p.add_argument(
        "--std", required=True, type=_cli.float_list, help="normalisation std per channel"
    )
    p.add_argument("--name", required=True, help="the model's name (experiments.external.<name>)")
    p.add_argument(
        "--claims",
        required=True,
        choices=sources.SOURCES,
        help="the gradient source it was trained with",
    )
    p.add_argument("--lam", type=float, help="its PAG weight, where the publisher states it")
    p.add_argument(
        "--seed", type=int, default=0, help="its training seed, where stated (an identifier only)"
    )
    p.add_argument("--out", required=True)
    return p


def main() -> None:
    args = parser().parse_args()
    _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    # the import is built and saved on the CPU
    mean = torch.tensor(args.mean)  # cpu: see above
    std = torch.tensor(args.std)  # cpu: see above
    if len(mean) != ds.input_shape[0] or len(std) != ds.input_shape[0]:
        raise ValueError(
            f"--mean and --std need one value per channel of {ds.name} ({ds.input_shape[0]}), "
            f"not {len(mean)} and {len(std)}"
        )
    model = models.import_file(
        args.checkpoint, args.arch, ds.input_shape, ds.num_classes, mean, std, "checkpoint"
    )
    models.save_model(
        args.out,
        model,
        args.arch,
        ds.input_shape,
        ds.num_classes,
        dataset=ds.name,
        classes=ds.classes,
        seed=args.seed,
        # a number in every CSV's lam column (NaN keys vanish from pandas groupbys); the tables
        # show whether it was stated
        lam=args.lam if args.lam is not None else 0.0,
        lam_stated=args.lam is not None,
        source=f"{EXTERNAL_PREFIX}{args.name}",
        claims=args.claims,
        imported_from=str(args.checkpoint),
        checkpoint_sha256=io.file_digest(args.checkpoint),
    )
    _cli.log(f"imported {args.checkpoint} ({args.arch}, claims {args.claims}) -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)
