"""`nasloop dashboard` on the database of a real two-cycle smoke run: every page and JSON endpoint
(values as `nasloop export` and `nasloop report` give them), the pages while the cycle runs, the
read-only database, hostile candidate text, and a real headless Chromium loading the pages."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from orchestrator.dashboard import DashboardError, create_app, open_readonly
from orchestrator.dashboard.diff import side_by_side
from orchestrator.dashboard.markup import highlight_python
from orchestrator.dashboard.queries import table_dict
from orchestrator.report import tables
from orchestrator.report.records import load_jsonl
from orchestrator.report.stats import summarize_experiment
from orchestrator.store.database import head_revision, open_database, upgrade
from orchestrator.store.schema import Candidate, Cycle, Experiment, Program
from orchestrator.untrusted import printable

pytest.importorskip("transformers")  # the smoke run's tiny model (tests.test_cycle)
from tests.test_cycle import _cycle_command, _invoke, workspace  # noqa: E402,F401  (its module fixture)

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"
EXPERIMENT, OTHER = "dash", "dash-b"
THRESHOLD = 0.40  # the smoke profile's (the paper's) accuracy threshold

# Script in every context a candidate's text can reach: element content, attributes, <title>.
HOSTILE = ("</script><script>document.title='pwned';window.pwned=1;alert(1)</script>"
           "<img src=x onerror=\"window.pwned=2;alert(2)\">\" onmouseover=\"window.pwned=3\" '"
           "\x1b[31mred\x1b[0m\u202e")
# In a page, none of it may stay raw: a tag, a control character.
RAW_MARKERS = ("<script>document.title", "<img src=x", "\x1b", "\u202e")


class _Elements(HTMLParser):
    """Every start tag of a page with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def injected(html: str) -> list[str]:
    """What hostile text could have added to a page: event handlers, images, scripts but ours."""
    parser = _Elements()
    parser.feed(html)
    found = [f"{tag} {name}" for tag, attrs in parser.tags for name in attrs if name.startswith("on")]
    found += [f"img {attrs.get('src')}" for tag, attrs in parser.tags if tag == "img"
              and not str(attrs.get("src")).startswith("/")]
    found += [f"script {attrs.get('src')}" for tag, attrs in parser.tags if tag == "script"
              and attrs.get("src") != "/static/dashboard.js"]
    return found


# --- no Docker needed ----------------------------------------------------------------------------


def test_highlighted_code_is_escaped() -> None:
    html = str(highlight_python(HOSTILE))
    assert all(marker not in html for marker in RAW_MARKERS) and injected(html) == []
    assert "style=" not in html  # classes only: the CSP allows no inline style
    text = re.sub(r'<span class="linenos">\d+</span>|<[^>]*>', "", html)
    assert unescape(text).strip("\n") == printable(HOSTILE)  # all of it shown, as text


def test_side_by_side_pairs_every_line() -> None:
    left, right = "a\nb\nc\nd\n", "a\nB\nc\nd\ne\n"
    d = side_by_side(left, right)
    assert [r.kind for r in d.rows] == ["equal", "replace", "equal", "equal", "insert"]
    assert [r.left for r in d.rows if r.left is not None] == left.splitlines()
    assert [r.right for r in d.rows if r.right is not None] == right.splitlines()
    assert (d.equal_lines, d.changed_lines) == (3, 2)


def test_refuses_a_missing_or_older_database(tmp_path: Path) -> None:
    with pytest.raises(DashboardError, match="no experiment database at"):
        open_readonly(tmp_path)
    from alembic.script import ScriptDirectory
    from orchestrator.store.database import alembic_config

    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision()).down_revision
    engine = create_engine(f"sqlite:///{tmp_path / 'nasloop.db'}")
    upgrade(engine, str(previous))
    engine.dispose()
    with pytest.raises(DashboardError, match=f"revision {previous}.*nasloop status"):
        open_readonly(tmp_path)


def _start_dashboard(workdir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`nasloop dashboard --port 0` on `workdir`, its stderr in `log`: the process and its URL."""
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "dashboard", "--workdir",
                                    str(workdir), "--port", "0"], stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, f"http://127.0.0.1:{match[1]}"


def test_ctrl_c_stops_the_server_cleanly_with_connections_open(tmp_path: Path) -> None:
    """Ctrl-C with requests in flight and an idle connection (a browser's preconnect): exit 0, in seconds."""
    engine = create_engine(f"sqlite:///{tmp_path / 'nasloop.db'}")
    upgrade(engine, "head")
    engine.dispose()
    log = tmp_path / "dashboard.log"
    process, url = _start_dashboard(tmp_path, log)
    try:
        with urllib.request.urlopen(url + "/", timeout=30) as response:
            assert response.status == 200 and response.headers["Connection"] == "close"
        idle = socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(url).port))  # sends nothing
        with ThreadPoolExecutor(max_workers=8) as pool:
            pending = [pool.submit(urllib.request.urlopen, url + "/api/experiments", timeout=30) for _ in range(16)]
            time.sleep(0.05)
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0, log.read_text()
            assert time.monotonic() - started < 20, log.read_text()
            for future in pending:  # each either answered in full or was refused: none cut off mid-way
                try:
                    with future.result() as response:
                        json.load(response)
                except OSError:
                    pass
        idle.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text() and "Fatal Python error" not in log.read_text()


# --- a real two-cycle smoke run, watched while it runs -------------------------------------------

@dataclass
class LiveRun:
    workdir: Path
    config: Path
    snapshots: list[dict[str, Any]]  # /api/experiments/dash, polled while the cycle ran
    page_statuses: list[tuple[str, int]] = field(default_factory=list)
    export: list[dict[str, Any]] = field(default_factory=list)


def _snapshot(client: Any) -> dict[str, Any] | None:
    response = client.get(f"/api/experiments/{EXPERIMENT}")
    if response.status_code == 404:  # not created yet
        return None
    assert response.status_code == 200, response.text
    data = response.get_json()
    return {"t": time.monotonic(), "version": data["version"], "pending": data["pending"],
            "phases": [c["phase"] for c in data["cycle_status"]], "evaluated": data["evaluated"],
            "generated": data["generated"]}


@pytest.fixture(scope="module")
def live_run(workspace) -> LiveRun:  # type: ignore[no-untyped-def]  # noqa: F811
    """Two cycles of `dash` while the dashboard polls it, then one cycle of `dash-b` to compare."""
    workdir, config = workspace
    db = open_readonly(workdir)
    client = create_app(db).test_client()
    run = LiveRun(workdir, config, [])
    command = _cycle_command(workdir, config, "--cycles", "2", "--experiment", EXPERIMENT, "--no-novelty",
                             "--no-threshold")
    log = workdir.parent / f"cycle-{EXPERIMENT}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        polls = 0
        while process.poll() is None:
            snapshot = _snapshot(client)
            if snapshot is not None:
                run.snapshots.append(snapshot)
                if polls % 8 == 0:  # the pages too, and a figure
                    cycle = len(snapshot["phases"])
                    for url in ("/", f"/experiments/{EXPERIMENT}", f"/experiments/{EXPERIMENT}/cycles/{cycle}",
                                f"/experiments/{EXPERIMENT}/adapters",
                                f"/experiments/{EXPERIMENT}/figures/overview.png"):
                        status = client.get(url).status_code
                        if not (url.endswith(".png") and status == 404):  # no figure before any evaluation
                            run.page_statuses.append((url, status))
                polls += 1
            time.sleep(1.0)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]
    run.snapshots.append(_snapshot(client))  # type: ignore[arg-type]
    db.close()
    result = subprocess.run(_cycle_command(workdir, config, "--cycles", "1", "--experiment", OTHER,
                                           "--no-novelty"), capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = workdir / "export.jsonl"
    _invoke("export", str(out), "--workdir", str(workdir))
    run.export = [json.loads(line) for line in out.read_text().splitlines()]
    return run


@pytest.fixture(scope="module")
def dashboard(live_run: LiveRun) -> Iterator[Any]:
    db = open_readonly(live_run.workdir)
    yield create_app(db).test_client()
    db.close()


@pytest.mark.docker
@pytest.mark.slow
def test_pages_follow_a_running_cycle(live_run: LiveRun) -> None:
    snaps = live_run.snapshots
    assert all(status == 200 for _, status in live_run.page_statuses), live_run.page_statuses
    assert len(live_run.page_statuses) >= 10
    evaluated = [s["evaluated"] for s in snaps]
    assert evaluated == sorted(evaluated) and evaluated[-1] == 6  # counts only grow, to all 6
    assert any(0 < n < 6 for n in evaluated), evaluated  # seen mid-run
    assert any(s["pending"] > 0 for s in snaps)  # generated, not yet evaluated
    phases = {p for s in snaps for p in s["phases"]}
    assert phases - {"done"}, phases  # a cycle seen before it was done
    assert snaps[-1]["phases"] == ["done", "done"] and snaps[-1]["pending"] == 0
    assert len({s["version"] for s in snaps}) >= 4  # the version the pages poll changed as it ran


@pytest.mark.docker
@pytest.mark.slow
def test_every_page_and_endpoint(dashboard: Any, live_run: LiveRun) -> None:
    pages = ["/", f"/experiments/{EXPERIMENT}", f"/experiments/{EXPERIMENT}/adapters", "/compare",
             f"/compare?experiment={EXPERIMENT}&experiment={OTHER}"]
    endpoints = ["/api/experiments", f"/api/experiments/{EXPERIMENT}", f"/api/experiments/{EXPERIMENT}/adapters",
                 f"/api/compare?experiment={EXPERIMENT}&experiment={OTHER}"]
    for row in live_run.export:
        if row["experiment"] == EXPERIMENT:
            pages.append(f"/experiments/{EXPERIMENT}/cycles/{row['cycle']}/candidates/{row['candidate']}")
            endpoints.append(f"/api/experiments/{EXPERIMENT}/cycles/{row['cycle']}/candidates/{row['candidate']}")
    for cycle in (1, 2):
        for query in ("", "?outcome=ok&sort=accuracy&order=desc", "?outcome=failed", "?sort=nn_jaccard_train"):
            pages.append(f"/experiments/{EXPERIMENT}/cycles/{cycle}{query}")
            endpoints.append(f"/api/experiments/{EXPERIMENT}/cycles/{cycle}{query}")
    figures = [f"/experiments/{EXPERIMENT}/figures/{k}.png" for k in
               ("overview", "accuracy", "valid_rate", "share", "histogram")]
    figures += [f"/experiments/{EXPERIMENT}/adapters/loss.png",
                f"/compare/valid_rate.png?experiment={EXPERIMENT}&experiment={OTHER}", "/compare/share.png"]
    for url in pages:
        response = dashboard.get(url)
        assert response.status_code == 200 and response.mimetype == "text/html", url
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for url in endpoints:
        response = dashboard.get(url)
        assert response.status_code == 200 and response.mimetype == "application/json", url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for url in figures:
        response = dashboard.get(url)
        assert response.status_code == 200 and response.data.startswith(b"\x89PNG\r\n\x1a\n"), url
    for url in ("/experiments/nope", f"/api/experiments/{EXPERIMENT}/cycles/9",
                f"/experiments/{EXPERIMENT}/cycles/1/candidates/99", f"/experiments/{EXPERIMENT}/figures/nope.png"):
        assert dashboard.get(url).status_code == 404, url
    assert dashboard.get(f"/api/experiments/{EXPERIMENT}/cycles/1?sort=code").status_code == 400


@pytest.mark.docker
@pytest.mark.slow
def test_values_match_export_and_report(dashboard: Any, live_run: LiveRun, tmp_path: Path) -> None:
    export = live_run.export
    overview = {e["experiment"]: e for e in dashboard.get("/api/experiments").get_json()["experiments"]}
    assert set(overview) == {EXPERIMENT, OTHER}
    assert overview[EXPERIMENT]["cycles_done"] == 2 and overview[OTHER]["cycles_done"] == 1
    assert overview[EXPERIMENT]["phase"] == "done" and overview[EXPERIMENT]["ablations"] == "no_novelty+no_threshold"
    for name, e in overview.items():
        rows = [r for r in export if r["experiment"] == name]
        assert e["evaluated"] == len(rows) and e["selected"] == sum(r["selected"] for r in rows)

    # Every candidate's numbers, as the export writes them.
    for row in export:
        path = f"/api/experiments/{row['experiment']}/cycles/{row['cycle']}"
        (listed,) = [c for c in dashboard.get(path).get_json()["candidates"] if c["candidate"] == row["candidate"]]
        detail = dashboard.get(f"{path}/candidates/{row['candidate']}").get_json()
        for key, value in row.items():
            if key in listed:
                assert listed[key] == value, (row, key)
            if key in detail:
                assert detail[key] == value, (row, key)
    sorted_rows = dashboard.get(f"/api/experiments/{EXPERIMENT}/cycles/1?sort=accuracy&order=desc").get_json()
    accuracies = [c["accuracy"] for c in sorted_rows["candidates"]]
    assert accuracies == sorted(accuracies, reverse=True) and len(accuracies) == 3

    # The statistics are `nasloop report`'s, and Table 2/3 those of the exported records.
    report = json.loads(_invoke("report", "--workdir", str(live_run.workdir), "--experiment", EXPERIMENT, "--json",
                                "--out", str(tmp_path / "report")))
    data = dashboard.get(f"/api/experiments/{EXPERIMENT}").get_json()
    assert data["stats"] == report and data["pending"] == 0
    out = tmp_path / "export.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in export))
    records = load_jsonl(out)
    stats = {name: summarize_experiment(name, [r for r in records if r.experiment == name], THRESHOLD)
             for name in (EXPERIMENT, OTHER)}
    assert data["table2"] == table_dict(tables.table2(stats[EXPERIMENT]))
    assert data["novelty"] == table_dict(tables.novelty_table(stats[EXPERIMENT]))
    compared = dashboard.get(f"/api/compare?experiment={EXPERIMENT}&experiment={OTHER}").get_json()
    assert compared["table3"] == table_dict(tables.table3([stats[EXPERIMENT], stats[OTHER]]))
    page = dashboard.get(f"/experiments/{EXPERIMENT}").text
    for row in data["table2"]["rows"]:
        assert all(f"<td>{cell}</td>" in page for cell in row)


@pytest.mark.docker
@pytest.mark.slow
def test_candidate_diffs_against_its_nearest_programs(dashboard: Any, live_run: LiveRun) -> None:
    db = open_database(live_run.workdir)
    with db.transaction() as session:
        programs = {p.name: p.code for p in session.scalars(select(Program))}
        codes = {(c.cycle.index, c.sample_index): c.code for c in session.scalars(
            select(Candidate).join(Cycle).join(Experiment).where(Experiment.name == EXPERIMENT))}
    db.close()
    checked_gen = 0
    for row in live_run.export:
        if row["experiment"] != EXPERIMENT or not row["valid"]:
            continue
        detail = dashboard.get(f"/api/experiments/{EXPERIMENT}/cycles/{row['cycle']}/candidates/{row['candidate']}"
                               ).get_json()
        training, generation = detail["comparisons"]
        assert training["jaccard"] == row["nn_jaccard_train"] and training["nearest"]["name"] == row["nearest_train"]
        match = re.fullmatch(r"cycle-(\d+)/sample-(\d+)", row["nearest_train"])
        expected = codes[int(match[1]), int(match[2])] if match else programs[row["nearest_train"]]
        for cmp, theirs in ((training, expected),
                            (generation, None if detail["nearest_gen"] is None else
                             codes[row["cycle"], int(detail["nearest_gen"].rsplit("-", 1)[1])])):
            if theirs is None:
                assert cmp["diff"] is None
                continue
            assert [r["left"] for r in cmp["diff"] if r["left"] is not None] == theirs.splitlines()
            assert [r["right"] for r in cmp["diff"] if r["right"] is not None] == detail["code"].splitlines()
        checked_gen += generation["diff"] is not None
        page = dashboard.get(f"/experiments/{EXPERIMENT}/cycles/{row['cycle']}/candidates/{row['candidate']}").text
        assert 'id="diff-training"' in page and f"Jaccard {row['nn_jaccard_train']:.3f}" in page
    assert checked_gen > 0  # some candidate had an earlier generation to compare with


@pytest.mark.docker
@pytest.mark.slow
def test_adapter_lineage(dashboard: Any, live_run: LiveRun) -> None:
    lineage = dashboard.get(f"/api/experiments/{EXPERIMENT}/adapters").get_json()["adapters"]
    assert [a["cycle"] for a in lineage] == [0, 1, 2]
    assert lineage[0]["parent"] is None and lineage[0]["sampled_by_cycles"] == [1]
    for parent, child in zip(lineage, lineage[1:]):
        assert child["parent"] == parent["path"]
    for a in lineage:  # the corpus each adapter learnt from, as written in the experiment folder
        corpus = live_run.workdir / "experiments" / EXPERIMENT / f"cycle-{a['cycle']}" / "corpus.jsonl"
        assert a["corpus"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
        assert a["corpus"]["examples"] == len(corpus.read_text().splitlines())
        assert a["loss_curve"] and a["loss_curve"][-1]["step"] == a["steps"]


@pytest.mark.docker
@pytest.mark.slow
def test_database_is_opened_read_only(live_run: LiveRun) -> None:
    db = open_readonly(live_run.workdir)
    try:
        with pytest.raises(OperationalError, match="readonly"):
            with db.reading() as session:
                session.execute(text("UPDATE experiments SET name = 'renamed'"))
        with db.reading() as session:
            assert session.scalar(select(Experiment.name).where(Experiment.name == EXPERIMENT)) == EXPERIMENT
    finally:
        db.close()


# --- hostile candidate text ----------------------------------------------------------------------

HOSTILE_PROGRAM = f"prog-{HOSTILE}"


@pytest.fixture(scope="module")
def hostile_workdir(live_run: LiveRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the smoke database plus an experiment `hostile` whose every candidate-made text (code,
    raw output, error, log tail, outcome, image, nearest program name) carries script."""
    workdir = tmp_path_factory.mktemp("hostile")
    with sqlite3.connect(live_run.workdir / "nasloop.db") as source, \
            sqlite3.connect(workdir / "nasloop.db") as copy:
        source.backup(copy)
    db = open_database(workdir)
    now = datetime.now(timezone.utc)
    with db.transaction() as session:
        real = session.scalar(select(Experiment).where(Experiment.name == EXPERIMENT))
        base_code = real.cycles[0].candidates[0].code
        code = f"# {HOSTILE}\n{base_code}\nNAME = {HOSTILE!r}  # {HOSTILE}\n"
        session.add(Program(name=HOSTILE_PROGRAM, source="lemur", origin=HOSTILE, code=f"# {HOSTILE}\n{base_code}",
                            code_sha256=hashlib.sha256(HOSTILE.encode()).hexdigest(), added_at=now))
        experiment = Experiment(name="hostile", profile="smoke", config=real.config, config_sha256="0" * 64,
                                code_version=HOSTILE, created_at=now)
        cycle = Cycle(experiment=experiment, index=1, phase="evaluating", n_generated=3, timings={}, started_at=now)
        common = {"raw_output": f"{HOSTILE}\n```python\n{code}```\n{HOSTILE}", "code": code,
                  "code_sha256": hashlib.sha256(code.encode()).hexdigest(), "log_tail": f"{HOSTILE}\n" * 3}
        session.add_all([
            experiment, cycle,
            Candidate(cycle=cycle, sample_index=0, outcome="ok", accuracy=0.5, holdout_accuracy=0.45, params=1000,
                      image=HOSTILE, protocol=HOSTILE, nn_jaccard_train=0.5, near_dup_text_train=False,
                      nearest_train=HOSTILE_PROGRAM, nn_jaccard_gen=0.0, near_dup_text_gen=False,
                      rejection_count=0, selected=True, selection_reason="selected", **common),
            Candidate(cycle=cycle, sample_index=1, outcome=HOSTILE, error=f"Traceback: {HOSTILE}", selected=False,
                      selection_reason="invalid", **common),
            Candidate(cycle=cycle, sample_index=2, **common),  # not evaluated yet
        ])
    db.close()
    return workdir


def _hostile_pages() -> list[str]:
    cycle = "/experiments/hostile/cycles/1"
    return ["/", "/experiments/hostile", cycle, f"{cycle}?outcome={urllib.parse.quote(HOSTILE)}",
            f"{cycle}/candidates/0", f"{cycle}/candidates/1", f"{cycle}/candidates/2", "/experiments/hostile/adapters",
            "/compare", f"/compare?experiment={EXPERIMENT}&experiment=hostile"]


@pytest.mark.docker
@pytest.mark.slow
def test_hostile_text_is_escaped(hostile_workdir: Path) -> None:
    db = open_readonly(hostile_workdir)
    client = create_app(db).test_client()
    try:
        for url in _hostile_pages():
            response = client.get(url)
            assert response.status_code == 200, url
            assert not [m for m in RAW_MARKERS if m in response.text], url
            assert injected(response.text) == [], url
        shown = client.get("/experiments/hostile/cycles/1/candidates/0").text
        # Shown, as text: in the code, the raw output, the log tail, the diff and the program's name.
        assert shown.count("&lt;script&gt;document.title=") >= 6 and "\\x1b[31mred" in shown
        failed = client.get("/experiments/hostile/cycles/1/candidates/1").text
        assert "Traceback: &lt;/script&gt;" in failed
        detail = client.get("/api/experiments/hostile/cycles/1/candidates/0").get_json()
        assert detail["code"].startswith(f"# {HOSTILE}")
        assert detail["comparisons"][0]["nearest"]["name"] == HOSTILE_PROGRAM
    finally:
        db.close()


# --- a real browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0")
# Records Content-Security-Policy violations: a hostile element that reached the DOM would cause one.
WATCH_CSP = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    reason = "no chromium installed (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI") == "true":  # CI installs it: the browser test must not pass by skipping there
        pytest.fail(reason)
    pytest.skip(reason)


class DevTools:
    """A page of headless Chromium, driven over the DevTools protocol; JavaScript dialogs are
    dismissed and recorded."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.last_id = 0
        self.dialogs: list[str] = []

    def _send(self, method: str, params: dict[str, Any]) -> int:
        self.last_id += 1
        self.ws.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        return self.last_id

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        wanted = self._send(method, params)
        while True:
            message = json.loads(self.ws.recv())
            if message.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(message["params"]["message"])
                self._send("Page.handleJavaScriptDialog", {"accept": True})
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting in the browser for: {expression}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def screenshot(self, path: Path, width: int = 1400) -> None:
        """The whole page (up to 6,000 pixels) at `width` CSS pixels."""
        def viewport(height: int) -> None:
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)

        viewport(900)
        viewport(min(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"), 6000))
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


@pytest.fixture(scope="module")
def browser() -> Iterator[DevTools]:
    binary = _chromium()
    profile = Path(tempfile.mkdtemp(prefix="nasloop-chromium-"))
    process = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            assert process.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            (page,) = [t for t in json.load(response) if t["type"] == "page"]
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        tools.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH_CSP)
        yield tools
        tools.ws.close()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def served(hostile_workdir: Path) -> Iterator[str]:
    """`nasloop dashboard --port 0` on the hostile copy (which holds the smoke run too): its URL."""
    process, url = _start_dashboard(hostile_workdir, hostile_workdir.parent / "dashboard.log")
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0  # Ctrl-C stops it cleanly


@pytest.mark.docker
@pytest.mark.slow
def test_server_answers_concurrent_requests(served: str) -> None:
    """Requests in parallel threads (as a browser loads a page's figures) each get their own connection."""
    paths = [f"/experiments/{EXPERIMENT}", f"/api/experiments/{EXPERIMENT}", f"/experiments/{EXPERIMENT}/cycles/1",
             *(f"/experiments/{EXPERIMENT}/figures/{k}.png?v=concurrent" for k in ("overview", "share", "histogram"))]

    def get(path: str) -> int:
        with urllib.request.urlopen(served + path, timeout=120) as response:
            response.read()
            return int(response.status)

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert list(pool.map(get, paths * 4)) == [200] * len(paths) * 4
    assert get("/") == 200


@pytest.mark.docker
@pytest.mark.slow
def test_browser_shows_the_experiment_and_a_candidate(browser: DevTools, served: str, dashboard: Any,
                                                      tmp_path: Path) -> None:
    browser.open(f"{served}/experiments/{EXPERIMENT}")
    assert browser.evaluate("document.title") == f"{EXPERIMENT} · nasloop dashboard"
    expected = dashboard.get(f"/api/experiments/{EXPERIMENT}").get_json()["table2"]
    assert browser.evaluate("document.querySelectorAll('#table2 tbody tr').length") == len(expected["rows"]) == 2
    assert browser.evaluate("document.querySelectorAll('#cycles tr.cycle').length") == 2
    browser.wait_for("document.images.length === 5 && "
                     "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)", timeout=120)
    shot = tmp_path / "dashboard-experiment.png"
    browser.screenshot(shot)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    if os.environ.get("NASLOOP_DASHBOARD_SCREENSHOTS"):  # refresh the README's screenshot
        shutil.copy(shot, DOCS / shot.name)

    browser.open(f"{served}/experiments/{EXPERIMENT}/cycles/1/candidates/1")
    rows = browser.evaluate("document.querySelectorAll('#diff-training tbody tr').length")
    code = dashboard.get(f"/api/experiments/{EXPERIMENT}/cycles/1/candidates/1").get_json()["code"]
    assert rows >= len(code.splitlines())
    assert browser.evaluate("document.querySelectorAll('#code .linenos').length") > 10
    browser.screenshot(tmp_path / "dashboard-candidate.png")
    assert browser.evaluate("window.__csp") == [] and browser.dialogs == []


@pytest.mark.docker
@pytest.mark.slow
def test_browser_runs_no_hostile_script(browser: DevTools, served: str, hostile_workdir: Path) -> None:
    titles = {"/": "Experiments", "/experiments/hostile": "hostile", "/experiments/hostile/cycles/1": "hostile cycle 1"}
    for url in _hostile_pages():
        browser.open(served + url)
        title = titles.get(url, "")
        if "/candidates/" in url:
            title = f"hostile cycle 1 sample {url[-1]}"
        if title:
            assert browser.evaluate("document.title") == f"{title} · nasloop dashboard", url
        assert browser.evaluate("typeof window.pwned") == "undefined", url
        assert browser.evaluate("document.querySelectorAll('script').length") == 1, url  # only dashboard.js
        assert browser.evaluate("document.querySelectorAll('[onerror], [onmouseover], img[src=x]').length") == 0, url
        assert browser.evaluate("window.__csp") == [], url  # nothing hostile even reached the DOM as markup
    assert browser.dialogs == []

    browser.open(f"{served}/experiments/hostile/cycles/1/candidates/0")
    for element in ("code", "raw-output", "log-tail", "diff-training"):
        assert "document.title='pwned'" in browser.evaluate(f"document.getElementById({element!r}).innerText")
    assert "\\x1b[31mred" in browser.evaluate("document.getElementById('log-tail').innerText")
    assert HOSTILE_PROGRAM[:40] in browser.evaluate("document.body.innerText")
    browser.open(f"{served}/experiments/hostile/cycles/1")
    outcome = browser.evaluate("document.querySelector('tr[data-outcome]:nth-child(2)').dataset.outcome")
    assert outcome == printable(HOSTILE)  # an attribute value, whole: the quotes did not end it

    # Live: the open page shows what a cycle commits, without a reload.
    browser.open(f"{served}/experiments/hostile")
    assert browser.evaluate("document.getElementById('pending') !== null")
    with sqlite3.connect(hostile_workdir / "nasloop.db") as connection:
        connection.execute("UPDATE candidates SET outcome = 'timeout', selected = 0, selection_reason = 'invalid' "
                           "WHERE outcome IS NULL")
        connection.execute("UPDATE cycles SET phase = 'done' WHERE experiment_id = "
                           "(SELECT id FROM experiments WHERE name = 'hostile')")
    browser.wait_for("document.getElementById('pending') === null && "
                     "document.querySelector('#cycles .phase').textContent === 'done'", timeout=30)
    assert int(browser.evaluate("document.body.dataset.updates")) >= 1
    assert browser.evaluate("typeof window.pwned") == "undefined" and browser.dialogs == []
