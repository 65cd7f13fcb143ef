# The entry points on a fresh machine; each creates the project-local .venv when missing.
#   make demo   runs the workflow on the offline demo config (workflow/profiles/demo), then
#               writes its report, results/demo/report.html (demo.yaml: results under results/demo)
#   make study  the demo and, on top of it, what its time budget cannot hold (study.yaml)
#   make fmnist the paper's protocol on Fashion-MNIST (fmnist.yaml: results under results/fmnist)
#   make test   runs the test suite
#   make numbers writes docs/numbers.md from results/demo and results/fmnist (those that exist)
#   make docs   writes docs/structure.md from the code's docstrings, then builds the docs site
# They need Python 3.11 or newer as python3 (or name one: make PYTHON=python3.12 test).
# A .venv made by another interpreter is removed and made again with this one.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Exits 0 when the venv in argv[1] was made by the running interpreter (same executable, same
# major.minor version, per its pyvenv.cfg); else says by which one and exits 1.
VENV_IS_OURS := import os, sys; \
cfg = dict(line.strip().split(" = ", 1) for line in open(os.path.join(sys.argv[1], "pyvenv.cfg")) if " = " in line); \
made = os.path.realpath(cfg.get("executable") or os.path.join(cfg.get("home", "?"), "python3")); \
version = cfg.get("version") or cfg.get("version_info") or "?"; \
this = os.path.realpath(getattr(sys, "_base_executable", sys.executable)); \
ok = made == this and version.split(".")[:2] == [str(v) for v in sys.version_info[:2]]; \
ok or print(f"{sys.argv[1]} was made by {made} (Python {version}), not by {this} (Python {sys.version.split()[0]})"); \
sys.exit(0 if ok else 1)

.PHONY: demo study fmnist test numbers docs venv check-python check-venv

# One Snakemake run: the workflow, then (--report-after-run) its self-contained HTML report.
demo: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile workflow/profiles/demo \
		--report results/demo/report.html --report-after-run

# demo.yaml, then study.yaml's keys on top of it (Snakemake merges them in order).
study: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile workflow/profiles/demo \
		--configfile demo.yaml study.yaml --report results/demo/report.html --report-after-run

# fmnist.yaml alone (it replaces config.yaml, as demo.yaml does): its own results root and report.
fmnist: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile workflow/profiles/demo \
		--configfile fmnist.yaml --report results/fmnist/report.html --report-after-run

test: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" python -m pytest

# Every measured number the docs quote, from the results roots and their runs' own records (a
# root not run here is named with the command that makes it); copies the demo's answer figure
# to docs/img.
numbers: venv
	$(PY) -m pagrob.numbers_page results/demo results/fmnist --out docs/numbers.md

# The docs site (mkdocs.yml; site/): the "What is where" page again from the docstrings, then a
# strict build, which fails on a broken link or anchor.
docs: venv
	$(PY) -m pagrob.structure_page --out docs/structure.md
	$(PY) -m mkdocs build --strict

# The project installed in .venv, by this interpreter. A sub-make decides about the stamp, so
# that it sees the folder as check-venv left it.
venv: check-venv
	@$(MAKE) --no-print-directory $(STAMP)

# Snakemake 9 and the tests (tomllib) need Python 3.11 or newer.
check-python:
	@found=$$($(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); \
	major=$${found%%.*}; minor=$${found#*.}; minor=$${minor%%.*}; \
	if [ -z "$$found" ] || [ "$$major" -lt 3 ] || { [ "$$major" -eq 3 ] && [ "$$minor" -lt 11 ]; }; then \
		echo "error: this project needs Python 3.11 or newer, but $(PYTHON) is $${found:-not found}." >&2; \
		echo "Install Python 3.11+ and put it first on PATH as python3, or run: make PYTHON=/path/to/python3.11 $(or $(MAKECMDGOALS),test)" >&2; \
		exit 1; \
	fi

# A .venv made by another interpreter (another python3 on PATH, or copied from elsewhere) has
# the wrong packages or none that run: remove it, to be made again.
check-venv: check-python
	@if [ -e $(VENV) ] && ! $(PYTHON) -c '$(VENV_IS_OURS)' $(VENV) 2>/dev/null; then \
		echo "$(VENV) is removed and made again with $(PYTHON)."; \
		rm -rf $(VENV); \
	fi

# pip byte-compiles what it installs one file at a time; compileall does it on every core. Like
# pip, it passes over the files that are not for this Python (torch's tests of newer syntax),
# hence the || true.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e '.[test]'
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)
