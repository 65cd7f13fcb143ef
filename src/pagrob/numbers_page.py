"""The measured-numbers page, docs/numbers.md: every measured number the docs quote, read from
results roots and their runs' own records (tables, answer pages, model.json files, benchmark
files, logs/runs.jsonl), never typed, and stamped with the CPU, the threads, the commit and the
date of the runs that made them. Pure Python (no PyTorch, no Snakemake).

``make numbers`` writes it, or by hand (any paths; a missing root is fine):

    .venv/bin/python -m pagrob.numbers_page results/demo results/fmnist --out docs/numbers.md

A root is known by its folder's name, the last part of a config's results key (demo.yaml's
results/demo, fmnist.yaml's results/fmnist), so that a root copied elsewhere reads the same; a
root that does not exist is shown as not run here, with the command that makes it. The configs
(demo.yaml, study.yaml, fmnist.yaml at the repository's top) say which tables each root holds,
through the grid they define (pagrob.grid): which are Table 1, the answers, and the outputs that
only the study (study.yaml on top of demo.yaml) writes into the demo's root.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pagrob import io, job_time, run_record
from pagrob.grid import Grid

#: the repository's top folder, where the configs are
REPO = Path(__file__).resolve().parents[2]
#: the command that writes this page (the Makefile's target)
MAKE_NUMBERS = "make numbers"
#: the page's sections, in order (other pages link to their anchors)
HEADINGS = (
    "Where these numbers come from",
    "The demo's answer",
    "The demo's tables",
    "The demo's time",
    "The study",
    "Fashion-MNIST",
)


@dataclass(frozen=True)
class Kind:
    """A kind of results root: the config files that make it, in order, and the make target
    that runs them."""

    title: str
    configs: tuple[str, ...]
    make: str


DEMO = Kind("The demo", ("demo.yaml",), "make demo")
STUDY = Kind("The study", ("demo.yaml", "study.yaml"), "make study")
FMNIST = Kind("Fashion-MNIST", ("fmnist.yaml",), "make fmnist")


def merged_config(configs_dir: Path, names: tuple[str, ...]) -> dict:
    """The config files merged in order, as ``--configfile a b`` merges them (the later file's
    keys update the earlier's, nested mappings key by key)."""
    import yaml

    def merge(into: dict, keys: dict) -> None:
        for key, value in keys.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    config: dict = {}
    for name in names:
        merge(config, yaml.safe_load((configs_dir / name).read_text()) or {})
    return config


@dataclass
class Configs:
    """What the configs say about the roots: each kind's grid."""

    demo: dict
    study: dict
    fmnist: dict

    @classmethod
    def read(cls, configs_dir: Path) -> Configs:
        return cls(*(merged_config(configs_dir, k.configs) for k in (DEMO, STUDY, FMNIST)))

    @staticmethod
    def outputs(config: dict) -> list[str]:
        """Every table and figure of a config, as paths below its results root."""
        root = config["results"].rstrip("/") + "/"
        return [o[len(root) :] for o in Grid(config).all_outputs() if o.startswith(root)]

    def study_only(self) -> list[str]:
        """The outputs that make study writes into the demo's root and make demo does not."""
        demo = set(self.outputs(self.demo))
        return [o for o in dict.fromkeys(self.outputs(self.study)) if o not in demo]

    def root_name(self, kind: Kind) -> str:
        config = self.fmnist if kind is FMNIST else self.demo
        return Path(config["results"]).name


# --- reading a root ---------------------------------------------------------------------------


def environments(root: Path) -> dict[str, Counter]:
    """What the model files recorded of where they were trained (model.json's environment
    block): field -> Counter of its values (None where a file lacks the field)."""
    fields = ("cpu", "threads", "git_commit", "cpu_capability")
    counts: dict[str, Counter] = {f: Counter() for f in fields}
    for path in sorted(root.rglob("model.json")):
        env = json.loads(path.read_text()).get("environment")
        if isinstance(env, dict):
            for f in fields:
                counts[f][env.get(f)] += 1
    return counts


def counted(counter: Counter, what: str = "model files") -> str:
    """'AMD EPYC (31 model files), not recorded (10)': each value, the most frequent first."""
    if not counter:
        return "not recorded (no model file here records it)"
    parts = []
    for i, (value, n) in enumerate(counter.most_common()):
        shown = "not recorded" if value is None else f"`{value}`"
        parts.append(f"{shown} ({n} {what})" if i == 0 else f"{shown} ({n})")
    return ", ".join(parts)


def minutes(seconds: float) -> str:
    """612.4 -> '10 min 12 s'."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def utc(moment: datetime | str | None) -> str:
    """A moment as '2026-12-03 14:45 UTC' (a recorded string that is no ISO time: as it is)."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if moment is None:
        return "?"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def newest_table_time(root: Path) -> str | None:
    """The modification time of the newest table page under the root, if any."""
    times = [p.stat().st_mtime for p in (root / "tables").glob("*.md")]
    return utc(datetime.fromtimestamp(max(times), UTC)) if times else None


# --- embedding a results page -------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})(\s.*)$")
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$")


def demote(text: str, level: int) -> str:
    """The page's headings moved so that its highest becomes ``level`` (at most 6 #'s), so that
    it fits under a heading of ``level - 1``; lines in code fences are left alone."""
    lines = text.splitlines()
    fenced, found = False, []
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and HEADING.match(line):
            found.append(len(HEADING.match(line).group(1)))
    if not found:
        return text
    shift = level - min(found)
    out, fenced = [], False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if m:
            line = "#" * min(6, max(1, len(m.group(1)) + shift)) + m.group(2)
        out.append(line)
    return "\n".join(out)


class Page:
    """The page being written: its lines, the images it copies beside itself, and how it shows
    the roots' paths."""

    def __init__(self, out: Path):
        self.out = out
        self.lines: list[str] = []
        self.copies: dict[Path, Path] = {}  # image in a root -> its copy beside the page

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def embed(self, page: Path, level: int, shown_root: str, root: Path) -> None:
        """A results page's markdown, its headings from ``level``, each figure it shows either
        linked to its copy beside this page (where one is made) or named by its path."""
        out = []
        for line in demote(page.read_text(), level).splitlines():
            m = IMAGE.match(line)
            if m:
                figure = (page.parent / m.group(2)).resolve()
                copy = self.copies.get(figure)
                if copy is not None:
                    line = f"![{m.group(1)}]({copy.relative_to(self.out.parent).as_posix()})"
                else:
                    try:
                        where = f"{shown_root}/{figure.relative_to(root.resolve()).as_posix()}"
                    except ValueError:  # a figure outside the root
                        where = m.group(2)
                    line = f"*Figure: `{where}` (in the results root).*"
            out.append(line)
        self.add(*out, "")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


# --- the sections -------------------------------------------------------------------------------


@dataclass
class Root:
    """One results root given on the command line (or not): its kind, its path as given, and
    whether it exists."""

    kind: Kind
    shown: str
    path: Path | None

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.is_dir()

    def not_run(self) -> str:
        where = f"`{self.shown}` does not exist" if self.path is not None else "no root given"
        return f"Not run here ({where}): `{self.kind.make}` makes it."


def stamp(page: Page, root: Root) -> None:
    """Where and when a root's numbers were made: its model files' environment and its runs'
    records."""
    page.add(f"### {root.kind.title} root: `{root.shown}`", "")  # never a section's anchor
    if not root.exists:
        page.add(root.not_run(), "")
        return
    env = environments(root.path)
    runs = run_record.read(root.path)
    last = runs[-1] if runs else None
    cpu = counted(env["cpu"])
    if last and last.get("cpu"):
        cpu += f"; the last run's Snakemake ran on `{last['cpu']}`"
    if last:
        when = f"{utc(last.get('finished'))} (the last of {len(runs)} recorded runs)"
        made = f"`{last.get('command')}` (config files: {', '.join(last.get('configfiles', []))})"
        commit = f"{counted(env['git_commit'])}; the last run: `{last.get('commit')}`"
    else:
        newest = newest_table_time(root.path)
        when = f"not recorded: this root has no {run_record.RUNS} (its run predates the record)" + (
            f"; its newest table was written {newest} (the file's time)" if newest else ""
        )
        made = (
            f"not recorded; its config's command is `{root.kind.make}` "
            f"({', '.join(root.kind.configs)})"
        )
        if root.kind is DEMO:
            made += f", and `{STUDY.make}` ({', '.join(STUDY.configs)}) for the study's outputs"
        commit = counted(env["git_commit"])
    page.add(
        f"- CPU: {cpu}",
        f"- Threads per job: {counted(env['threads'])}",
        f"- Kernels' instruction set: {counted(env['cpu_capability'])}",
        f"- Commit: {commit}",
        f"- Run finished: {when}",
        f"- Made by: {made}",
        "",
    )


def time_block(page: Page, root: Root) -> None:
    """A root's wall time (its runs' records) and its job time by kind (its benchmark files)."""
    runs = run_record.read(root.path)
    if runs:
        page.add("Wall time of each recorded run (logs/runs.jsonl), the last one last:", "")
        page.add("| finished | wall time | cores | config files | targets | command |")
        page.add("|---|---:|---:|---|---|---|")
        for run in runs:
            wall = run.get("wall_s")
            page.add(
                f"| {utc(run.get('finished'))} | {minutes(wall) if wall is not None else '?'} "
                f"| {run.get('cores') or 'cluster'} | {' '.join(run.get('configfiles', []))} "
                f"| {' '.join(run.get('targets', []))} | `{run.get('command')}` |"
            )
        page.add("")
    else:
        page.add(
            f"Wall time: not recorded (`{root.shown}` has no {run_record.RUNS}; the run "
            "printed it as its last line, “Workflow finished: ...”).",
            "",
        )
    split = job_time.split(root.path)
    if not split.total:
        page.add("Job time: no benchmark files under this root.", "")
        return
    page.add(
        f"Job time: {split.job_count} timed jobs, {split.total:.0f} s in all (the jobs' own "
        "seconds, from their `*.benchmark.tsv` files: two jobs at once on two cores count "
        "twice), by kind:",
        "",
        "| kind of job | seconds | share | jobs |",
        "|---|---:|---:|---:|",
    )
    for name, seconds, share, jobs in split.rows():
        page.add(f"| {name} | {seconds:.0f} | {share:.1f}% | {jobs} |")
    page.add(f"| all | {split.total:.0f} | 100% | {split.job_count} |", "")


def table_order(name: str) -> tuple:
    """The paper's tables (table*) first, then the rest by name."""
    return (not name.startswith("table"), name)


def answers(root: Path) -> list[Path]:
    """The answer pages of a root: the image datasets' first, the toy's (its ground truth)
    last."""
    pages = sorted((root / "tables").glob("answer_*.md"))
    return sorted(pages, key=lambda p: p.name == "answer_toy.md")


def copy_answer_figures(page: Page, demo: Root, configs: Configs) -> None:
    """Mark the demo's answer figures to be copied beside the page (img/), where they exist."""
    if not demo.exists:
        return
    for dataset in configs.demo["experiments"]["main"]["tables"]:
        figure = demo.path / "figures" / f"answer_{dataset}.png"
        if figure.is_file():
            page.copies[figure.resolve()] = page.out.parent / "img" / figure.name


def study_outputs(configs: Configs) -> tuple[list[str], list[str]]:
    """The study's own tables (in table order) and figures (by name), as paths below the root."""
    study_only = configs.study_only()
    tables = sorted(
        (o for o in study_only if o.startswith("tables/") and o.endswith(".md")),
        key=lambda o: table_order(Path(o).name),
    )
    figures = sorted(o for o in study_only if o.startswith("figures/") and o.endswith(".png"))
    return tables, figures


def sources_section(page: Page, demo: Root, fmnist: Root, command: str, now: datetime) -> None:
    """The page's title and its first section: how it was written and each root's stamp."""
    page.add(
        "# Measured numbers",
        "",
        f"Every number on this page is read from the results roots below and their runs' own "
        f"records by `{MAKE_NUMBERS}`; none is typed. Do not edit it: run the command again.",
        "",
        f"## {HEADINGS[0]}",
        "",
        f"This page: written {utc(now)} by `{command}` "
        f"(`{MAKE_NUMBERS}` runs it on results/demo and results/fmnist). Each root's models "
        "recorded where they were trained (their model.json); each run since the record exists "
        f"appended a line to its {run_record.RUNS} (when it finished, its wall time, cores, "
        "CPU, commit, config files, targets and command).",
        "",
    )
    stamp(page, demo)
    stamp(page, fmnist)


def answer_section(page: Page, demo: Root) -> None:
    """The demo's answer pages, embedded."""
    page.add(f"## {HEADINGS[1]}", "")
    if not demo.exists:
        page.add(demo.not_run(), "")
        return
    found = answers(demo.path)
    for answer in found:
        page.add(f"From `{demo.shown}/tables/{answer.name}`:", "")
        page.embed(answer, 3, demo.shown, demo.path)
    if not found:
        page.add(f"No answer page in `{demo.shown}/tables`: `{DEMO.make}` writes them.", "")


def tables_section(page: Page, demo: Root, study_tables: list[str]) -> None:
    """The demo's tables other than its answers and the study's, embedded in table order."""
    page.add(f"## {HEADINGS[2]}", "")
    if not demo.exists:
        page.add(demo.not_run(), "")
        return
    study_names = {Path(o).name for o in study_tables}
    tables = [
        p
        for p in (demo.path / "tables").glob("*.md")
        if not p.name.startswith("answer_") and p.name not in study_names
    ]
    for table in sorted(tables, key=lambda p: table_order(p.name)):
        page.add(f"### {table.name}", "", f"From `{demo.shown}/tables/{table.name}`:", "")
        page.embed(table, 4, demo.shown, demo.path)
    if not tables:
        page.add(f"No table in `{demo.shown}/tables`: `{DEMO.make}` writes them.", "")


def time_section(page: Page, demo: Root) -> None:
    """The demo's wall time and job time."""
    page.add(f"## {HEADINGS[3]}", "")
    if not demo.exists:
        page.add(demo.not_run(), "")
    else:
        time_block(page, demo)


def study_section(
    page: Page, demo: Root, study_tables: list[str], study_figures: list[str]
) -> None:
    """What the study adds to the demo's root: its tables embedded, its figures named."""
    page.add(f"## {HEADINGS[4]}", "")
    expected = ", ".join(f"`{o}`" for o in study_tables + study_figures)
    present = [o for o in study_tables + study_figures if demo.exists and (demo.path / o).is_file()]
    if not demo.exists:
        page.add(
            f"Not run here (no demo root): `{STUDY.make}` ({', '.join(STUDY.configs)}) writes "
            f"its outputs into the demo's root: {expected}.",
            "",
        )
        return
    if not present:
        page.add(
            f"The study's outputs ({expected}) are not in `{demo.shown}`: `{STUDY.make}` "
            f"({', '.join(STUDY.configs)}, on top of the demo's models) writes them.",
            "",
        )
        return
    page.add(
        f"What `{STUDY.make}` ({', '.join(STUDY.configs)}) adds to `{demo.shown}`; "
        "its job time is in the demo's above.",
        "",
    )
    for table in study_tables:
        if (demo.path / table).is_file():
            page.add(f"### {Path(table).name}", "", f"From `{demo.shown}/{table}`:", "")
            page.embed(demo.path / table, 4, demo.shown, demo.path)
    shown = [f"`{demo.shown}/{o}`" for o in study_figures if o in present]
    if shown:
        page.add(f"Its figures: {', '.join(shown)}.", "")
    missing = [f"`{o}`" for o in study_tables + study_figures if o not in present]
    if missing:
        page.add(f"Not in this root (yet): {', '.join(missing)}.", "")


def fashion_section(page: Page, fmnist: Root, configs: Configs) -> None:
    """The Fashion-MNIST section: its root's numbers, or the command that makes them."""
    page.add(f"## {HEADINGS[5]}", "")
    if not fmnist.exists:
        page.add(
            f"Not run here: `{FMNIST.make}` ({', '.join(FMNIST.configs)}: results under "
            f"{configs.fmnist['results']})."
            + (f" `{fmnist.shown}` does not exist." if fmnist.path is not None else ""),
            "",
        )
    else:
        fashion(page, fmnist, configs)


def render(
    demo: Root, fmnist: Root, out: Path, configs: Configs, command: str, now: datetime
) -> tuple[str, dict[Path, Path]]:
    """The page's markdown, and the images to copy beside it (source -> destination)."""
    page = Page(out)
    copy_answer_figures(page, demo, configs)
    study_tables, study_figures = study_outputs(configs)
    sources_section(page, demo, fmnist, command, now)
    answer_section(page, demo)
    tables_section(page, demo, study_tables)
    time_section(page, demo)
    study_section(page, demo, study_tables, study_figures)
    fashion_section(page, fmnist, configs)
    return page.text(), page.copies


def fashion(page: Page, root: Root, configs: Configs) -> None:
    """The Fashion-MNIST root: its answer, Table 1, its PAG scores, the class-score ablation and
    the sigma sweep (where its config runs them), its time."""
    experiments = configs.fmnist.get("experiments", {})
    main = experiments["main"]["tables"]
    shown = []
    for answer in answers(root.path):
        page.add(f"From `{root.shown}/tables/{answer.name}`:", "")
        page.embed(answer, 3, root.shown, root.path)
        shown.append(answer.name)
    if not shown:
        page.add(f"No answer page in `{root.shown}/tables`.", "")
    wanted = [f"{table}_{dataset}.md" for dataset, table in main.items()]
    wanted += [
        f"pag_scores_{d}.md" for d in main if configs.fmnist["datasets"][d].get("pag_scores")
    ]
    wanted += [f"{e}.md" for e in ("grad_of_ablation", "sigma_sweep") if e in experiments]
    for name in wanted:
        path = root.path / "tables" / name
        page.add(f"### {name}", "")
        if path.is_file():
            page.add(f"From `{root.shown}/tables/{name}`:", "")
            page.embed(path, 4, root.shown, root.path)
            shown.append(name)
        else:
            page.add(f"Not in `{root.shown}/tables`.", "")
    others = sorted(
        (p.name for p in (root.path / "tables").glob("*.md") if p.name not in shown),
        key=table_order,
    )
    if others:
        page.add(
            f"Its other tables, in `{root.shown}/tables`: {', '.join(f'`{n}`' for n in others)}.",
            "",
        )
    page.add("### Time", "")
    time_block(page, root)


# --- the command --------------------------------------------------------------------------------


def classify(paths: list[str], configs: Configs) -> tuple[Root, Root]:
    """The demo's and Fashion-MNIST's roots among ``paths``, by their folders' names."""
    names = {configs.root_name(k): k for k in (DEMO, FMNIST)}
    found: dict[Kind, Root] = {}
    for given in paths:
        kind = names.get(Path(given).name)
        if kind is None:
            raise SystemExit(
                f"error: cannot tell which config made {given}: a root's folder is named as the "
                f"last part of its config's results key ({', '.join(sorted(names))}: "
                f"{DEMO.configs[0]}'s or {FMNIST.configs[0]}'s). Name it so, or pass the root "
                "as the workflow wrote it."
            )
        if kind in found:
            raise SystemExit(f"error: two roots of {kind.title}: {found[kind].shown} and {given}")
        found[kind] = Root(kind, given.rstrip("/") or given, Path(given))
    if not any(r.exists for r in found.values()):
        raise SystemExit(
            f"error: none of the results roots exists ({', '.join(paths)}): run "
            f"`{DEMO.make}` or `{FMNIST.make}` first, or name the roots where they are."
        )
    return found.get(DEMO, Root(DEMO, "results/demo", None)), found.get(
        FMNIST, Root(FMNIST, "results/fmnist", None)
    )


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(
        prog="python -m pagrob.numbers_page", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "roots",
        nargs="+",
        help="results roots, e.g. results/demo results/fmnist (a missing one: 'not run here')",
    )
    p.add_argument("--out", type=Path, required=True, help="the page, e.g. docs/numbers.md")
    p.add_argument(
        "--configs",
        type=Path,
        default=REPO,
        help="the folder of demo.yaml, study.yaml and fmnist.yaml (default: the repository's)",
    )
    args = p.parse_args(argv)
    configs = Configs.read(args.configs)
    demo, fmnist = classify(args.roots, configs)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m pagrob.numbers_page " + shlex.join(given)
    text, copies = render(demo, fmnist, args.out, configs, command, datetime.now(UTC))
    for source, copy in copies.items():
        io.atomic_write(copy, lambda tmp, source=source: shutil.copyfile(source, tmp))
    io.write_text(text, args.out)
    print(f"wrote {args.out}" + "".join(f" and {c}" for c in copies.values()))
    return args.out


if __name__ == "__main__":
    main()
