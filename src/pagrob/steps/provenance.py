"""The report's provenance page (results/provenance.html): the config that produced the run,
the library versions, and the run's wall time. Standard library and PyYAML only (no torch).

- Config: the effective config as the workflow saw it (schema defaults filled in), as YAML.
- Versions: every package pinned in the environment files (envs/*.yaml), pinned and as
  installed in the Python that runs this step (the steps' Python: the one that runs Snakemake,
  or the pytorch conda environment with --use-conda), and the versions the trained models
  recorded in their model.json (torch, CUDA, numpy, Python where they were trained).
- Wall time: from the start of the first benchmarked job (a benchmark file's time minus the
  seconds it records) to the newest of the run's outputs; also the summed time of the jobs.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib.metadata
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

from pagrob import html_table, io
from pagrob.steps import _cli


def pins(env_files: list[str]) -> dict[str, str]:
    """{package: pinned version} from the pip sections of conda environment files."""
    import yaml

    out: dict[str, str] = {}
    for path in env_files:
        spec = yaml.safe_load(Path(path).read_text())
        for dep in spec.get("dependencies", []):
            if isinstance(dep, dict):
                for entry in dep.get("pip", []):
                    name, _, version = entry.partition("==")
                    out[name.strip()] = version.strip()
    return out


def installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed here"


def benchmarks(folders: list[str]) -> list[dict]:
    """Every Snakemake benchmark file (*.benchmark.tsv) in ``folders``: job, seconds, end time."""
    jobs = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.benchmark.tsv")):
            with path.open() as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            if not rows or not rows[0].get("s"):
                continue
            seconds = float(rows[0]["s"])
            end = path.stat().st_mtime
            jobs.append(
                {
                    "job": path.name.removesuffix(".benchmark.tsv"),
                    "path": str(path),
                    "seconds": seconds,
                    "start": end - seconds,
                    "end": end,
                }
            )
    return jobs


def model_versions(folders: list[str]) -> list[tuple[str, int]]:
    """The distinct library versions and environments (instruction set and its pins, threads,
    torch build, git commit) recorded by the models in ``folders`` (model.json), with how many
    models recorded each."""
    counts: dict[str, int] = defaultdict(int)
    for folder in folders:
        path = Path(folder) / "model.json"
        if path.is_file():
            info = json.loads(path.read_text())
            versions = info.get("versions") or {}
            text = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
            env = info.get("environment")
            if env:
                pins = ", ".join(f"{k}={v}" for k, v in sorted(env.get("isa_pins", {}).items()))
                text += (
                    f"; CPU kernels {env.get('cpu_capability')} (pins: {pins or 'none'}), "
                    f"{env.get('threads')} threads, torch {env.get('torch_build')}, commit "
                    f"{env.get('git_commit')}"
                )
            counts[text] += 1
    return sorted(counts.items())


def duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def markdown(
    config: dict,
    configfiles: list[str],
    env_pins: dict[str, str],
    snakemake_version: str,
    jobs: list[dict],
    outputs: list[str],
    recorded: list[tuple[str, int]],
) -> str:
    """The page as markdown (html_table renders it), without the config (a code block)."""
    lines = ["# Provenance of this run", ""]
    last = max((Path(p).stat().st_mtime for p in outputs if Path(p).exists()), default=None)
    lines += ["## Wall time", ""]
    if jobs:
        first = min(j["start"] for j in jobs)
        end = max([j["end"] for j in jobs] + ([last] if last else []))
        total = sum(j["seconds"] for j in jobs)
        lines += [
            f"**{duration(end - first)}** from the start of the first benchmarked job "
            f"({stamp(first)}) to the last output written ({stamp(end)}); the {len(jobs)} "
            f"benchmarked jobs took {duration(total)} together. A run resumed or extended by "
            "later invocations is timed from its first job to its last output, pauses included.",
            "",
            "| job | jobs | seconds, total | seconds, longest |",
            "|---|---|---|---|",
        ]
        by_job: dict[str, list[float]] = defaultdict(list)
        for j in jobs:
            by_job[j["job"]].append(j["seconds"])
        for name, secs in sorted(by_job.items(), key=lambda kv: -sum(kv[1])):
            lines.append(f"| {name} | {len(secs)} | {sum(secs):.1f} | {max(secs):.1f} |")
    else:
        lines.append("No benchmark files found: no job of this run was timed.")
    lines += [
        "",
        "## Library versions",
        "",
        f"Python {platform.python_version()} on {platform.platform()}; Snakemake "
        f"{snakemake_version} ran the workflow. Pinned: the environment files (envs/*.yaml, "
        "the same pins as pyproject.toml); installed: in the Python that ran the steps.",
        "",
        "| package | pinned | installed |",
        "|---|---|---|",
    ]
    for name, version in sorted(env_pins.items()):
        lines.append(f"| {name} | {version} | {installed(name)} |")
    if recorded:
        lines += ["", "Recorded by the trained models (model.json):", ""]
        lines += [f"- {versions} ({n} model{'' if n == 1 else 's'})" for versions, n in recorded]
    lines += [
        "",
        "## Config",
        "",
        "Config files: "
        + (", ".join(f"`{c}`" for c in configfiles) or "none (config.yaml)")
        + ". The effective config, schema defaults filled in:",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-json", required=True, help="the workflow's config, as JSON")
    p.add_argument(
        "--configfiles", nargs="*", default=[], help="the config files given to Snakemake"
    )
    p.add_argument("--envs", nargs="+", required=True, help="conda environment files with the pins")
    p.add_argument("--snakemake-version", default="unknown")
    p.add_argument(
        "--job-folders",
        nargs="*",
        default=[],
        help="folders holding the run's benchmark files and model.json files",
    )
    p.add_argument("--outputs", nargs="*", default=[], help="the run's outputs (for the end time)")
    p.add_argument("--out-html", required=True)
    args = p.parse_args()
    import yaml

    config = json.loads(args.config_json)
    text = markdown(
        config,
        args.configfiles,
        pins(args.envs),
        args.snakemake_version,
        benchmarks(args.job_folders),
        args.outputs,
        model_versions(args.job_folders),
    )
    page = html_table.page(text)
    block = (
        "<pre><code>"
        + html.escape(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        + "</code></pre>\n"
    )
    page = page.replace("</body>", block + "</body>")
    io.write_text(page, args.out_html)
    print(text)


if __name__ == "__main__":
    _cli.run(main)
