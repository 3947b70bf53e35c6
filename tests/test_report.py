"""`nasloop report`: log validation, golden tables, figures, the HTML page and the JSON document.

Golden tables live in tests/fixtures/report/golden/; after an intended change of the tables, rewrite
them with `NASLOOP_UPDATE_GOLDEN=1 pytest tests/test_report.py` and review the diff.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest
from click.testing import CliRunner

from orchestrator.commands import report as report_command
from orchestrator.commands.report import report
from orchestrator.report.records import RecordError, group_experiments, load_jsonl, load_records
from orchestrator.report import ReportResult, ReportSettings, figures, write_report
from orchestrator.report.document import stats_document
from orchestrator.report.stats import summarize_experiment

FIXTURES = Path(__file__).parent / "fixtures" / "report"
LOG = FIXTURES / "experiments.jsonl"
GOLDEN = FIXTURES / "golden"
TABLE_FILES = [f"{t}.{ext}" for t in ("table2", "table3") for ext in ("md", "csv", "tex")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

GOOD = {"experiment": "e", "cycle": 1, "candidate": 0, "valid": True, "accuracy": 0.45,
        "selected": False}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The report of the fixture log (two experiments), written once for the module."""
    out = tmp_path_factory.mktemp("report")
    grouped = group_experiments(load_jsonl(LOG))
    settings = ReportSettings(accuracy_threshold=0.40, profile="paper", initial_corpus=1698)
    return write_report(grouped, settings, out, sources=[LOG])


def write_log(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")
    return path


# --- logs -------------------------------------------------------------------------------------

def test_fixture_log_loads() -> None:
    records = load_jsonl(LOG)
    grouped = group_experiments(records)
    assert list(grouped) == ["full", "no-novelty"]
    assert len(records) == 23
    assert records[1].source == f"{LOG}:2" and records[1].accuracy is None


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ("[1, 2]", r"bad\.jsonl:2: expected a JSON object"),
    ({k: v for k, v in GOOD.items() if k != "accuracy"},
     r"bad\.jsonl:2: missing field\(s\) 'accuracy'"),
    ({k: v for k, v in GOOD.items() if k not in ("valid", "cycle")},
     r"bad\.jsonl:2: missing field\(s\) 'cycle', 'valid'"),
    ({**GOOD, "accuracy": 47.78}, r"bad\.jsonl:2: field 'accuracy' must be a fraction in \[0, 1\]"),
    ({**GOOD, "accuracy": None},
     r"bad\.jsonl:2: field 'accuracy' is null but the candidate is valid"),
    ({**GOOD, "valid": "yes"}, r"bad\.jsonl:2: field 'valid' must be true or false"),
    ({**GOOD, "cycle": 1.5}, r"bad\.jsonl:2: field 'cycle' must be an integer"),
    ({**GOOD, "cycle": True}, r"bad\.jsonl:2: field 'cycle' must be an integer"),
    ({**GOOD, "experiment": ""}, r"bad\.jsonl:2: field 'experiment' must be a non-empty string"),
    ({**GOOD, "selected": None}, r"bad\.jsonl:2: field 'selected' must be true or false, got null"),
    ({**GOOD, "valid": False, "selected": True}, r"bad\.jsonl:2: field 'selected' is true but"),
    ({**GOOD, "nn_jaccard_train": 1.5}, r"bad\.jsonl:2: field 'nn_jaccard_train'"),
    ({**GOOD, "rejection_count": -1}, r"bad\.jsonl:2: field 'rejection_count'"),
    ({**GOOD, "near_dup_text_gen": 1}, r"bad\.jsonl:2: field 'near_dup_text_gen'"),
    ({**GOOD, "accuracy": float("nan")}, r"bad\.jsonl:2: field 'accuracy'"),
])
def test_malformed_line_is_named(tmp_path: Path, line: object, message: str) -> None:
    path = write_log(tmp_path / "bad.jsonl", {**GOOD, "candidate": 99}, line)
    with pytest.raises(RecordError, match=message):
        load_jsonl(path)


def test_optional_fields_may_be_absent_and_unknown_ones_are_ignored(tmp_path: Path) -> None:
    path = write_log(tmp_path / "min.jsonl", "",
                     {"experiment": "e", "cycle": 1, "valid": False, "accuracy": None,
                      "selected": False, "raw_output": "..."})
    (record,) = load_jsonl(path)
    assert record.nn_jaccard_train is None and record.candidate is None


def test_empty_log_and_duplicates_and_unknown_experiment(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no candidate records"):
        load_jsonl(write_log(tmp_path / "empty.jsonl", ""))
    records = load_jsonl(LOG)
    with pytest.raises(RecordError, match=r"candidate 0 of cycle 1 of experiment 'full' already "
                                          r"appeared at .*experiments\.jsonl:1"):
        group_experiments(records + records)
    with pytest.raises(RecordError, match=r"unknown experiment\(s\) 'nope'; the logs hold: "
                                          r"'full', 'no-novelty'"):
        group_experiments(records, ["full", "nope"])
    assert list(group_experiments(records, ["no-novelty", "full"])) == ["no-novelty", "full"]


def test_no_log_and_no_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no --log FILE.jsonl given"):
        load_records([], tmp_path)


# --- tables -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TABLE_FILES)
def test_golden_tables(built: ReportResult, name: str) -> None:
    produced = (built.out / name).read_text(encoding="utf-8")
    golden = GOLDEN / name
    if os.environ.get("NASLOOP_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(produced, encoding="utf-8")
    assert produced == golden.read_text(encoding="utf-8")


def test_table2_shows_the_edge_cases(built: ReportResult) -> None:
    text = (built.out / "table2.md").read_text()
    assert "| 1 | 0/4 | 0.0 [0.0, 49.0] | n/a | n/a | n/a | n/a | 0 | 1698 |" in text  # none valid
    assert "| 2 | 5/5 | 100.0 [56.6, 100.0] |" in text  # all valid
    assert "55.00 [no CI: n = 1]" in text  # a single valid model
    assert "Cycle 3: a single valid model: no t interval for the mean." in text
    assert "Total train (initial 1698 + selected so far)" in text


# --- figures ----------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_figures_are_sensible_pngs(built: ReportResult) -> None:
    pngs = sorted(p.name for p in built.files if p.suffix == ".png")
    assert pngs == sorted(["valid_rate.png", "share_ge_40.png"] + [
        f"{kind}-{slug}.png" for kind in ("accuracy", "overview", "histogram")
        for slug in ("full", "no-novelty")])
    for name in pngs:
        data = (built.out / name).read_bytes()
        width, height = png_size(data)
        assert 400 <= width <= 2500 and 200 <= height <= 2000, name
        assert len(data) > 10_000, name
    pixels = matplotlib.image.imread(built.out / "overview-full.png")
    assert pixels.shape[0] > 500 and pixels.shape[1] > 1000 and pixels.std() > 0.05


def test_overview_figure_axes(built: ReportResult) -> None:
    exp = built.stats[0]
    fig = figures.overview_figure(exp, {1: [0.3, 0.5], 2: [0.45], 3: [0.55]})
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == [
        "First-epoch accuracy trends", "Quality distribution by accuracy threshold",
        "Model selection and novelty",
        "Training-data growth: Total train (initial 1698 + selected so far)"]
    assert all(ax.get_xlabel() == "Cycle" for ax in axes)
    assert axes[0].get_ylabel() == "First-epoch accuracy (%)"
    assert axes[1].get_ylabel() == "Share of valid models (%)"
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["best", "mean", "mean 95% CI (t)", "median", "threshold 40%"]


def test_valid_rate_figure_has_one_series_per_experiment(built: ReportResult) -> None:
    fig = figures.valid_rate_figure(built.stats)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "Valid generation rate (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["full", "no-novelty"]


# --- pages and JSON ---------------------------------------------------------------------------

class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables = 0
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        for name in ("href", "src"):
            if tag != "img" and attributes.get(name):
                self.links.append(attributes[name] or "")
        if tag == "table":
            self.tables += 1
        self._in_caption = tag == "caption"

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.captions.append(data)


def test_html_is_self_contained(built: ReportResult) -> None:
    parser = PageParser()
    parser.feed((built.out / "report.html").read_text(encoding="utf-8"))
    parser.close()
    pngs = [p for p in built.files if p.suffix == ".png"]
    assert len(parser.images) == len(pngs)
    prefix = "data:image/png;base64,"
    for src in parser.images:
        assert src.startswith(prefix)
        assert png_size(base64.b64decode(src[len(prefix):]))[0] >= 400
    assert parser.links == []  # nothing to fetch: no stylesheets, scripts or links
    assert parser.tables == 5  # Table 3, and Table 2 + novelty per experiment
    assert parser.captions == ["Experiments compared",
                               "Per-cycle statistics of experiment 'full'",
                               "Novelty per cycle of experiment 'full'",
                               "Per-cycle statistics of experiment 'no-novelty'",
                               "Novelty per cycle of experiment 'no-novelty'"]


def test_html_and_markdown_state_provenance(built: ReportResult) -> None:
    page = (built.out / "report.html").read_text(encoding="utf-8")
    markdown = (built.out / "report.md").read_text(encoding="utf-8")
    for text in (page, markdown):
        assert "Configuration, protocol and lineage" in text
        assert "adapter lineage" in text and "exported JSONL logs do not carry them" in text
        assert "accuracy threshold (from the profile): 40%" in text
    for png in (p.name for p in built.files if p.suffix == ".png"):
        assert f"]({png})" in markdown


def test_json_document(built: ReportResult) -> None:
    doc = json.loads((built.out / "stats.json").read_text())
    assert doc == built.document
    assert doc["accuracy_threshold"] == 0.40 and doc["experiments"] == ["full", "no-novelty"]
    required = {"cycle", "n_gen", "n_valid", "valid_rate", "valid_rate_ci", "best", "mean",
                "mean_ci", "median", "share_ge_40", "share_ge_40_ci", "selected", "corpus_size"}
    assert all(required <= set(c) for c in doc["cycles"])
    first = doc["cycles"][0]
    assert (first["experiment"], first["cycle"], first["n_gen"], first["n_valid"]) == \
        ("full", 1, 6, 3)
    assert first["valid_rate"] == 0.5 and first["best"] == 0.4778  # fractions, not percentages
    single = doc["cycles"][2]
    assert single["mean_ci"] is None and single["notes"]
    none_valid = doc["cycles"][3]
    assert none_valid["valid_rate_ci"][0] == 0.0 and none_valid["mean"] is None
    overall = {o["experiment"]: o for o in doc["overall"]}
    assert overall["full"]["n_valid"] == 9 and overall["full"]["corpus_size"] == 1703
    assert overall["no-novelty"]["unique_selected"] == 1


# --- command ----------------------------------------------------------------------------------

def test_command_single_experiment_into_the_workdir(tmp_path: Path) -> None:
    result = CliRunner().invoke(report, ["--workdir", str(tmp_path), "--log", str(LOG),
                                         "--experiment", "full", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["experiments"] == ["full"] and len(doc["cycles"]) == 3
    out = tmp_path / "report"
    assert (out / "report.html").is_file() and (out / "stats.json").is_file()
    assert not (out / "table3.md").exists()  # one experiment: nothing to compare
    assert "Selected so far (initial corpus not given)" in (out / "table2.md").read_text()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Replace the (slow) file writing with the statistics alone, recording the settings."""
    seen: dict[str, object] = {}

    def fake_write_report(grouped, settings, out, sources=()):  # type: ignore[no-untyped-def]
        seen.update(settings=settings, out=out, sources=sources)
        stats = tuple(summarize_experiment(name, records, settings.accuracy_threshold,
                                           settings.initial_corpus)
                      for name, records in grouped.items())
        return ReportResult(out=out, files=(), stats=stats, document=stats_document(stats))

    monkeypatch.setattr(report_command, "write_report", fake_write_report)
    return seen


def test_command_threshold_comes_from_the_config(tmp_path: Path,
                                                 captured: dict[str, object]) -> None:
    config = tmp_path / "strict.toml"
    config.write_text("[selection]\naccuracy_threshold = 0.5\n")
    result = CliRunner().invoke(report, ["--log", str(LOG), "--experiment", "full", "--config",
                                         str(config), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    settings = captured["settings"]
    assert isinstance(settings, ReportSettings) and settings.accuracy_threshold == 0.5
    assert json.loads(result.output)["overall"][0]["share_ge_50"] == 2 / 9
    assert captured["out"] == tmp_path / "out"


def test_command_summary(tmp_path: Path, captured: dict[str, object]) -> None:
    result = CliRunner().invoke(report, ["--workdir", str(tmp_path), "--log", str(LOG),
                                         "--initial-corpus", "1698"])
    assert result.exit_code == 0, result.output
    assert captured["settings"] == ReportSettings(0.40, "paper", initial_corpus=1698)
    assert captured["out"] == tmp_path / "report"
    lines = result.output.splitlines()
    assert lines[0] == ("full: 3 cycle(s), 9/15 valid (60.0 [35.7, 80.2] %), mean accuracy "
                        "42.49 [35.51, 49.47] %, best 55.00 %, 5 selected")
    assert lines[1].startswith("no-novelty: 2 cycle(s), 2/8 valid")
    assert lines[-1] == f"wrote 0 files to {tmp_path / 'report'}"


@pytest.mark.parametrize(("args", "message"), [
    ([], "no --log FILE.jsonl given"),
    (["--log", str(LOG), "--experiment", "nope"], "unknown experiment(s) 'nope'"),
    (["--log", "missing.jsonl"], "does not exist"),
    (["--log", str(LOG), "--profile", "nope"], "unknown profile 'nope'"),
])
def test_command_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(report, ["--workdir", str(tmp_path), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "report").exists()


def test_command_names_the_bad_line(tmp_path: Path) -> None:
    bad = write_log(tmp_path / "bad.jsonl", GOOD, {**GOOD, "candidate": 1, "accuracy": 47.78})
    result = CliRunner().invoke(report, ["--workdir", str(tmp_path), "--log", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: field 'accuracy' must be a fraction" in result.output
