"""A robust teacher for RIGD (Section 4.1): Madry PGD adversarial training (Appendix A.2,
Eq. 5) on one threat model, or a user-supplied checkpoint (e.g. MadryLab's robust CIFAR-10
ResNet-50) imported into the same model-file format. Either way the result is
``results/<dataset>/teacher_<norm>/lam0/seed<seed>/model.pt``."""

from __future__ import annotations

import torch

from pagrob import data, models
from pagrob.attacks import NORMS
from pagrob.steps import _cli
from pagrob.steps.train import add_training_options, train_and_save
from pagrob.train import TrainSettings


def main() -> None:
    p = _cli.parser(__doc__)
    add_training_options(p)
    _cli.add_settings(p, TrainSettings, required=False)  # with its adversarial attack
    p.add_argument("--norm", required=True, choices=NORMS)
    p.add_argument("--seed", type=int, required=True, help="the teacher's seed (its folder's)")
    p.add_argument("--import-state-dict", help="import this checkpoint instead of training")
    p.add_argument(
        "--import-arch", choices=models.ARCHITECTURES, help="the imported checkpoint's architecture"
    )
    p.add_argument(
        "--import-mean",
        type=_cli.float_list,
        help="its input normalisation mean, e.g. '0.49 0.48 0.45'",
    )
    p.add_argument("--import-std", type=_cli.float_list, help="its input normalisation std")
    args = p.parse_args()
    device = _cli.setup(args, [args.out])
    ds = data.load_prepared(args.data)
    source = f"teacher_{args.norm}"
    if args.import_state_dict:
        import_checkpoint(args, ds, source)
        return
    if not (args.arch and args.settings):
        raise ValueError(
            "adversarial training needs --arch and --settings (or --import-state-dict)"
        )
    settings = _cli.read_settings(args, TrainSettings)
    attack = settings.adversarial or {}
    if attack.get("norm") != args.norm or settings.seed != args.seed or settings.lam:
        raise ValueError(
            f"--settings train {attack.get('norm')!r} adversarially, seed {settings.seed}, lam "
            f"{settings.lam}: a {args.norm} teacher of seed {args.seed} needs adversarial.norm "
            f"{args.norm!r}, seed {args.seed} and lam 0"
        )
    ds.x_train, ds.y_train = ds.x_train.to(device), ds.y_train.to(device)
    train_and_save(args, ds, settings, None, device, source=source)


def import_checkpoint(args, ds, source: str) -> None:
    if not (args.import_arch and args.import_mean and args.import_std):
        raise ValueError("--import-state-dict needs --import-arch, --import-mean and --import-std")
    path = args.import_state_dict
    model = models.import_file(
        path,
        args.import_arch,
        ds.input_shape,
        ds.num_classes,
        torch.tensor(args.import_mean),  # cpu: the import is built and saved on the CPU
        torch.tensor(args.import_std),  # cpu: the import is built and saved on the CPU
        "teacher checkpoint",
    )
    models.save_model(
        args.out,
        model,
        args.import_arch,
        ds.input_shape,
        ds.num_classes,
        dataset=ds.name,
        classes=ds.classes,
        seed=args.seed,
        lam=0.0,
        source=source,
        imported_from=str(path),
    )
    _cli.log(f"imported {path} ({args.import_arch}) -> {args.out}")


if __name__ == "__main__":
    _cli.run(main)
