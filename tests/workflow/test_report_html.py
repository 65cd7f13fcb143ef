"""The HTML report of a finished run (`snakemake --report`), read as a file and in a browser.

A copy of the session's toy run (tests/conftest.py's toy_run: demo.yaml's toy experiment alone,
one seed); then its report must embed the
table (as an HTML table, with our numbers and the paper's) and the figure, open in headless
Chromium with the table rendered as a table and the figure loaded, and nothing fetched from the
network. A report of missing outputs is refused with Snakemake's own message, and stale outputs
are rebuilt by `--report-after-run` (what `make demo` runs) before the report is written. The
pieces are tested on their own too: the markdown tables as HTML, and the provenance page's wall
time, versions and config.

Chromium comes from Debian's `chromium` package, installed with apt-get when it is missing (as
tests/test_slurm.py installs SLURM); the browser test is skipped, saying why, where it cannot be.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import TOY_EPOCHS, TOY_OPTS, copy_run, snakemake, toy_workflow

TABLE, FIGURE, PROVENANCE = (
    "results/demo/tables/toy.html",
    "results/demo/figures/fig3_toy.png",
    "results/demo/provenance.html",
)
OPTS = TOY_OPTS


@pytest.fixture(scope="module")
def finished(toy_run, tmp_path_factory):
    """A finished toy run (every output of the config, the provenance page included: a copy of
    the session's toy_run) and its report, report.html."""
    where = copy_run(toy_run, tmp_path_factory.mktemp("report"))
    proc = snakemake([*OPTS, "--report", "report.html"], where)
    assert "Report created." in proc.stdout + proc.stderr
    # the front page (the answer's lines turned into reStructuredText) parses cleanly
    assert "(WARNING/" not in proc.stdout + proc.stderr, proc.stderr
    return where


def report_variable(page: str, name: str, script: str | None = None):
    """The JSON of ``var <name> = ...;`` in the report's <script id="<script or name>">."""
    match = re.search(
        rf'<script id="{script or name}">\s*var {name} = (.*?);\s*</script>', page, re.S
    )
    assert match, f"no {name} in the report"
    return json.loads(match.group(1))


def data_uri_bytes(uri: str) -> tuple[str, bytes]:
    head, _, data = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:80]
    return head[5:].split(";")[0], base64.b64decode(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def toy_numbers(where: Path) -> dict[str, str]:
    """Our L2-PGD numbers and the paper's, as the table prints them (2 decimals)."""
    csv = pd.read_csv(where / "results/demo/tables/toy.csv").set_index(["source", "metric"])
    return {
        "vanilla": f"{csv.loc[('vanilla', 'l2'), 'mean']:.2f}",
        "pag": f"{csv.loc[('nearest_neighbor', 'l2'), 'mean']:.2f}",
        "paper_pag": f"{csv.loc[('nearest_neighbor', 'l2'), 'paper']:.2f}",  # 75.50, Section 5.1
    }


@pytest.mark.slow
def test_report_embeds_the_tables_numbers_and_the_figure(finished):
    page = (finished / "report.html").read_text()
    results = report_variable(page, "results")
    assert {TABLE, FIGURE, PROVENANCE} <= set(results)
    assert set(report_variable(page, "categories")) == {
        "The answer",
        "Toy experiment",
        "Provenance",
    }

    # the table: an HTML page (shown in the report, not only offered as a download) whose
    # cells hold our numbers and, in the shaded paper column, the paper's
    mime, table = data_uri_bytes(results[TABLE]["data_uri"])
    assert mime == results[TABLE]["mime_type"] == "text/html"
    table = table.decode()
    numbers = toy_numbers(finished)
    assert numbers["paper_pag"] == "75.50"
    for key in ("vanilla", "pag"):
        assert re.search(rf"<td>{re.escape(numbers[key])}( ± [0-9.]+)?</td>", table), (
            key,
            numbers[key],
        )
    assert f'<td class="paper">{numbers["paper_pag"]}</td>' in table
    assert '<th class="paper">PGD-10 L2 ε=15 (600 images) (paper)</th>' in table
    assert "Section 5.1" in results[TABLE]["caption"] and "75.5" in results[TABLE]["caption"]

    # the figure, embedded byte for byte
    mime, png = data_uri_bytes(results[FIGURE]["data_uri"])
    assert mime == "image/png"
    assert png == (finished / FIGURE).read_bytes()
    assert "Fig. 3" in results[FIGURE]["caption"]

    # provenance: this run's config, the versions and the wall time
    _, provenance = data_uri_bytes(results[PROVENANCE]["data_uri"])
    provenance = provenance.decode()
    assert "Wall time" in provenance and "benchmarked jobs" in provenance
    assert re.search(r'<td class="label">torch</td><td>[0-9.]+</td><td>[0-9.]+', provenance)
    assert f"epochs: {TOY_EPOCHS}" in provenance and "nearest_neighbor" in provenance

    # the front page: the workflow description, linking the categories this run has
    desc = report_variable(page, "workflow_desc", "workflow-desc")
    assert "Do Perceptually Aligned Gradients Imply Adversarial Robustness?" in desc
    assert "app.showCategory('Toy%20experiment')" in desc and "Measuring PAG" not in desc
    # and first the answer's generated lines (the toy's: its ground truth)
    assert "The answer on the toy data" in desc and "manifold alignment" in desc
    assert desc.index("The answer on the toy data") < desc.index(
        "app.showCategory('Toy%20experiment')"
    )

    # self-contained: nothing loaded from elsewhere
    assert not re.search(r"""<(script|img|link|iframe)[^>]+(src|href)=["']?https?:""", page)


# --- the pieces: tables as HTML, the provenance page -------------------------------------------


def test_markdown_tables_become_html_tables():
    from pagrob import html_table

    text = (
        "# Table 1: accuracy on cifar10\n\nAccuracy in %; Δ = ours − paper.\nA <second> line.\n\n"
        "| Method | Clean (ours) | Clean (paper) | Clean Δ |\n|---|---|---|---|\n"
        "| Vanilla ⚠1 | 93.00 ± 0.50 | 93.61 | -0.61 |\n\n"
        "⚠ Failed a check:\n\n1. Vanilla (λ 0): `autoattack_gap` (L∞)\n\n- **note** one\n"
        "| a stray | row |\n"
    )
    page = html_table.page(text)
    assert (
        page.startswith("<!doctype html>") and "<title>Table 1: accuracy on cifar10</title>" in page
    )
    assert "<h1>Table 1: accuracy on cifar10</h1>" in page
    assert "<p>Accuracy in %; Δ = ours − paper.<br>\nA &lt;second&gt; line.</p>" in page
    assert (
        '<tr><th>Method</th><th>Clean (ours)</th><th class="paper">Clean (paper)</th>'
        '<th class="delta">Clean Δ</th></tr>'
    ) in page
    assert (
        '<tr><td class="label">Vanilla ⚠1</td><td>93.00 ± 0.50</td><td class="paper">93.61</td>'
        '<td class="delta">-0.61</td></tr>'
    ) in page
    assert "<ol>\n<li>Vanilla (λ 0): <code>autoattack_gap</code> (L∞)</li>\n</ol>" in page
    assert "<ul>\n<li><strong>note</strong> one</li>\n</ul>" in page
    assert "<p>| a stray | row |</p>" in page  # a row without a header is text, and is not lost
    # a text without a heading gets the title as one
    assert "<h1>PAG scores</h1>" in html_table.page("| a |\n|---|\n| 1 |\n", "PAG scores")


def test_provenance_page_times_the_run_and_lists_versions(tmp_path):
    """Wall time: from the first benchmarked job's start (the file's time minus its seconds) to the
    newest output; the pins beside the installed versions; the models' recorded versions; the
    config."""
    import sys

    from conftest import ROOT

    model = tmp_path / "results/toy/vanilla/lam0/seed0"
    logs = tmp_path / "results/logs"
    model.mkdir(parents=True)
    logs.mkdir(parents=True)
    t0 = 1_700_000_000
    header = "s\th:m:s\tmax_rss\n"
    (model / "train.benchmark.tsv").write_text(header + "100.0\t0:01:40\t1\n")
    os.utime(model / "train.benchmark.tsv", (t0 + 100, t0 + 100))  # ran t0 .. t0 + 100
    (logs / "fig4_x.benchmark.tsv").write_text(header + "30.5\t0:00:30\t1\n")
    os.utime(logs / "fig4_x.benchmark.tsv", (t0 + 400, t0 + 400))
    (model / "model.json").write_text(json.dumps({"versions": {"torch": "9.9.9", "cuda": "None"}}))
    table = tmp_path / "results/tables/toy.md"
    table.parent.mkdir()
    table.write_text("x")
    os.utime(table, (t0 + 725, t0 + 725))  # the last output: 12 min 5 s after the first start
    out = tmp_path / "provenance.html"
    config = {"device": "cpu", "datasets": {"toy": {"train": {"epochs": 7}}}}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pagrob.steps.provenance",
            "--config-json",
            json.dumps(config),
            "--configfiles",
            "tiny.yaml",
            "--envs",
            str(ROOT / "envs/pytorch.yaml"),
            str(ROOT / "envs/report.yaml"),
            "--snakemake-version",
            "9.27.1",
            "--job-folders",
            str(model),
            str(logs),
            str(tmp_path / "absent"),
            "--outputs",
            str(table),
            "--out-html",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "<strong>12 min 5 s</strong> from the start of the first benchmarked job" in page
    assert "the 2 benchmarked jobs took 2 min 10 s together" in page
    assert '<tr><td class="label">train</td><td>1</td><td>100.0</td><td>100.0</td></tr>' in page
    import importlib.metadata

    pandas = importlib.metadata.version("pandas")
    assert f'<tr><td class="label">pandas</td><td>3.1.1</td><td>{pandas}</td></tr>' in page
    assert "<li>cuda None, torch 9.9.9 (1 model)</li>" in page
    assert "Snakemake 9.27.1 ran the workflow" in page and "<code>tiny.yaml</code>" in page
    assert "device: cpu" in page and "epochs: 7" in page


# --- in a browser --------------------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (standard library only):
    commands go to its fd 3, replies and events come from its fd 4, each a JSON text ending in
    a NUL byte."""

    FLAGS = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
        "--window-size=1400,900",
    ]

    def __init__(self, binary: str, profile: Path):
        def high(fd):  # the child's pipe ends above 10, so that moving them to 3 and 4 is safe
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return moved

        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        cmd_r, res_w = high(cmd_r), high(res_w)
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-',
                binary,
                *self.FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(cmd_r, res_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(cmd_r)
        os.close(res_w)
        self.buffer, self.last_id, self.events, self.session = b"", 0, [], None

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.res_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self.res_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.proc.stderr.read().decode()[-2000:]}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(
        self, method: str, params: dict | None = None, browser: bool = False, timeout: float = 60
    ) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._message(deadline))

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True
        )["sessionId"]
        self.send("Page.enable")
        self.send("Network.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str, context: int | None = None):
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        if context is not None:
            params["contextId"] = context
        out = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_js(self, expression: str, context: int | None = None, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression, context)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true in the page: {expression}")
            time.sleep(0.2)
        return value

    def frame_context(self, url_prefix: str) -> int:
        """A JavaScript context in the child frame whose URL starts with ``url_prefix``."""
        frames = self.send("Page.getFrameTree")["frameTree"].get("childFrames", [])
        frame = next(f["frame"] for f in frames if f["frame"]["url"].startswith(url_prefix))
        return self.send("Page.createIsolatedWorld", {"frameId": frame["id"]})["executionContextId"]

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.write_bytes(data)
        return data

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)
        os.close(self.res_r)


@pytest.fixture(scope="module")
def chromium_binary():
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "Chromium is not installed, and installing Debian's chromium needs root and apt-get"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if proc.returncode != 0:
            pytest.skip(
                f"cannot install Debian's chromium ({' '.join(cmd)}): {proc.stderr.strip()[-500:]}"
            )
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no chromium is on PATH")
    return found


# clicks a result's button (eye: view, information-circle: caption) in the report's result list
CLICK = """(() => {{
  const row = [...document.querySelectorAll("nav table tbody tr")]
    .find(r => r.cells[0].innerText.startsWith({label}));
  if (!row) return false;
  row.querySelector('a[iconname="{icon}"]').click();
  return true;
}})()"""

IMAGE = """(() => {
  const img = document.querySelector("img[src^='data:image/png']");
  return img && img.complete && img.naturalWidth > 0 && img.checkVisibility()
    && img.getBoundingClientRect().width > 100 && [img.naturalWidth, img.naturalHeight];
})()"""


def not_blank(png: bytes) -> None:
    import io

    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(png))[..., :3]
    colours = {tuple(p) for p in pixels[::7, ::7].reshape(-1, 3).round(2).tolist()}
    assert pixels.std() > 0.05 and len(colours) > 20, "the screenshot is blank"


@pytest.mark.slow
def test_report_renders_in_chromium(finished, chromium_binary, tmp_path):
    browser = Chromium(chromium_binary, tmp_path / "profile")
    try:
        browser.open((finished / "report.html").as_uri())
        # the app ran: the menu lists this run's categories
        menu = browser.wait_js(
            'document.querySelector("#app nav") && document.querySelector("#app nav").innerText'
        )
        assert "Toy experiment" in menu and "Provenance" in menu
        not_blank(browser.screenshot(tmp_path / "front.png"))

        # the toy table as a user opens it: the category, then the table's view button; it
        # shows in a frame, rendered as a table with our numbers and the paper's
        browser.js('app.showCategory("Toy experiment")')
        browser.wait_js(CLICK.format(label=json.dumps("Toy table"), icon="eye"))
        browser.wait_js(
            '(document.querySelector("iframe") || {src: ""}).src.startsWith("data:text/html")'
        )
        frame = browser.frame_context("data:text/html")
        shown = browser.wait_js(
            'document.readyState === "complete" && document.querySelector("table") && '
            '[...document.querySelectorAll("table")].map(t => t.innerText).join("\\n")',
            context=frame,
        )
        numbers = toy_numbers(finished)
        for key in ("vanilla", "pag", "paper_pag"):
            assert numbers[key] in shown, (key, numbers[key], shown)
        visible = browser.js(
            '[...document.querySelectorAll("table")].every(t => t.checkVisibility() && '
            "t.getBoundingClientRect().width > 100 && t.getBoundingClientRect().height > 30)",
            context=frame,
        )
        assert visible, "a table is not rendered visibly"
        columns = browser.js(
            '[...document.querySelectorAll("table th")].map(th => th.innerText)', context=frame
        )
        assert any(c.replace("\n", " ").endswith("(paper)") for c in columns), columns
        cells = browser.js('document.querySelectorAll("table td").length', context=frame)
        assert cells >= 2 * 9, cells  # two models x nine columns at least
        not_blank(browser.screenshot(tmp_path / "table.png"))

        # the figure: its view button shows the PNG, loaded at its own size; its caption
        browser.wait_js(CLICK.format(label=json.dumps("Fig. 3"), icon="eye"))
        size = browser.wait_js(IMAGE)
        assert tuple(size) == png_size((finished / FIGURE).read_bytes())
        browser.wait_js(CLICK.format(label=json.dumps("Fig. 3"), icon="information-circle"))
        caption = browser.wait_js(
            'document.querySelector("nav").innerText.includes("DESCRIPTION") && '
            'document.querySelector("nav").innerText'
        )
        assert "decision regions" in caption
        not_blank(browser.screenshot(tmp_path / "figure.png"))

        # offline: every request the page made was for the file itself or embedded data
        urls = browser.requested_urls()
        assert urls and all(u.startswith(("file:", "data:", "about:")) for u in urls), urls
    finally:
        browser.close()


# --- missing and stale outputs ---------------------------------------------------------------------


def test_report_of_missing_outputs_is_refused(tmp_path):
    toy_workflow(tmp_path)
    for targets in (["results/demo/tables/toy.md"], []):  # one table; the whole config
        proc = snakemake([*OPTS, "--report", "report.html", *targets], tmp_path, check=False)
        assert proc.returncode != 0
        said = proc.stdout + proc.stderr
        assert re.search(
            r"results/demo/tables/(answer_)?toy(_pag)?\.html marked for report but does not exist",
            said,
        )
        assert not (tmp_path / "report.html").exists()


@pytest.mark.slow
def test_report_after_run_rebuilds_stale_outputs_first(finished, tmp_path):
    """`--report-after-run` (what `make demo` runs) brings stale outputs up to date before it
    writes the report; a plain `--report` reports what is on disk."""
    where = tmp_path / "run"
    shutil.copytree(finished, where, symlinks=True)
    metrics = pd.read_csv(where / "results/demo/toy/metrics.csv")
    metrics.loc[(metrics["source"] == "vanilla") & (metrics["attack"] == "pgd"), "accuracy"] = 12.34
    metrics.to_csv(where / "results/demo/toy/metrics.csv", index=False)
    dry = snakemake(["-n", *OPTS], where)
    said = dry.stdout + dry.stderr
    assert "rule toy_table:" in said and "Updated input files: results/demo/toy/metrics.csv" in said

    snakemake([*OPTS, "--report", "report.html", "--report-after-run"], where)
    results = report_variable((where / "report.html").read_text(), "results")
    _, table = data_uri_bytes(results[TABLE]["data_uri"])
    assert "<td>12.34</td>" in table.decode()  # the rebuilt table, in the report
    again = snakemake(["-n", *OPTS], where)
    assert "Nothing to be done" in again.stdout + again.stderr
