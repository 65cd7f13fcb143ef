"""One registry (pagrob.registry) of the sources and datasets: the config schema, the rules, the
library, the report and the bench agree with it."""

import re

import yaml

from conftest import ROOT
from pagrob import datasets, registry, report, sources

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def enums(node, path=""):
    """(key path, enum) of every enum in the schema."""
    if isinstance(node, dict):
        if "enum" in node:
            yield path, node["enum"]
        for key, value in node.items():
            yield from enums(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from enums(value, f"{path}/{i}")


def test_the_schema_names_the_registrys_datasets_and_sources():
    dataset_enums = [e for p, e in enums(SCHEMA) if set(e) & {"cifar10", "stl10"}]
    source_enums = [e for p, e in enums(SCHEMA) if set(e) & {"one_image"}]
    # the image experiments' datasets: one enum, $defs/image_dataset, that every key refers to
    assert dataset_enums == [SCHEMA["$defs"]["image_dataset"]["enum"]]
    assert sorted(dataset_enums[0]) == sorted(registry.IMAGE_DATASETS)
    text = (ROOT / "workflow/schemas/config.schema.yaml").read_text()
    assert text.count('{$ref: "#/$defs/image_dataset"}') == 6
    assert len(source_enums) >= 4
    trained, pag = set(registry.TRAINED), set(registry.TRAINED) - {"vanilla"}
    for (
        e
    ) in source_enums:  # what a student trains with, with or without vanilla, or a representative
        assert set(e) in (trained, pag, set(registry.REPRESENTATIVES)), e
    assert set(SCHEMA["properties"]["datasets"]["properties"]) == set(registry.DATASETS)


def test_the_rules_library_report_and_bench_read_the_registry():
    common = (ROOT / "workflow/rules/common.smk").read_text()
    assert re.search(r"^from pagrob import (.*, )?registry\b", common, re.M)
    assert "DATASETS = list(registry.DATASETS)" in common
    assert sources.SOURCES == registry.TRAINED and sources.TEACHER_SOURCES == registry.RIGD
    assert list(report.METHOD_NAMES) == list(registry.SOURCES)
    assert report.TEACHERS == registry.TEACHERS
    # every torchvision dataset has its archive (files, MD5 sums) and loader, and its shape
    torchvision = {n for n, d in registry.DATASETS.items() if d.kind == "torchvision"}
    assert set(datasets.ARCHIVES) == set(datasets.LOADERS) == torchvision
    assert all(datasets.SHAPES[n] == registry.DATASETS[n].shape for n in registry.DATASETS)
    bench = (ROOT / "bench/gpu_check.py").read_text()
    assert "REAL_SIZES = {name: d.sizes for name, d in registry.DATASETS.items()" in bench
