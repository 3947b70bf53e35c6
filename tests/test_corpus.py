"""The corpus: LEMUR import and de-duplication, persistence, stats, chat export, CLI."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from orchestrator.commands.corpus import corpus as corpus_cli
from orchestrator.commands.novelty import novelty as novelty_cli
from orchestrator.config import load_config
from orchestrator.corpus.export import chat_examples, corpus_stats
from orchestrator.corpus.importing import import_lemur
from orchestrator.corpus.index import load_index
from orchestrator.corpus.minhash import estimated_jaccard
from orchestrator.store.database import open_database
from orchestrator.store.schema import Program, ProgramSignature

LEMUR_JSONL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lemur" / \
    "lemur-img-classification.jsonl.gz"
CONFIG = load_config("paper")
TAU = CONFIG.novelty.tau


@pytest.fixture(scope="module")
def lemur() -> list[dict]:
    if not LEMUR_JSONL.is_file():
        pytest.skip(f"shared LEMUR corpus not found at {LEMUR_JSONL}")
    with gzip.open(LEMUR_JSONL, "rt") as fh:
        return [json.loads(line) for line in fh]


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


@pytest.fixture(scope="module")
def subset(lemur: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few families with near-duplicates, plus the named classics."""
    names = {"AlexNet", "ResNet", "DenseNet", "GoogLeNet", "AirNet", "AirNext", "MobileNetV2"}
    picked = [r for r in lemur if r["name"] in names]
    picked += [r for r in lemur if r["name"].startswith("ga-")][:15]
    picked += [r for r in lemur if r["name"].startswith("ast-")][:15]
    return write_jsonl(tmp_path_factory.mktemp("subset") / "subset.jsonl", picked)


@pytest.fixture(scope="module")
def full_db(lemur: list[dict], tmp_path_factory: pytest.TempPathFactory):
    """The whole shared LEMUR file imported once (the module's expensive step)."""
    db = open_database(tmp_path_factory.mktemp("full"))
    with db.transaction() as session:
        report = import_lemur(session, LEMUR_JSONL, CONFIG.novelty)
    yield db, report
    db.close()


def table_dump(db) -> list[tuple]:
    with db.transaction() as session:
        programs = session.execute(select(Program.id, Program.name, Program.code_sha256,
                                          Program.duplicate_of_id, Program.duplicate_similarity)
                                   .order_by(Program.id)).all()
        signatures = session.execute(select(ProgramSignature.program_id, ProgramSignature.signature)
                                     .order_by(ProgramSignature.program_id)).all()
    return [tuple(r) for r in programs] + [tuple(r) for r in signatures]


# --- import and de-duplication of the real corpus ----------------------------------------------

def test_full_import_counts_and_dedupe(full_db, lemur: list[dict]) -> None:
    db, report = full_db
    assert report.read == len(lemur) == 2217
    assert not report.problems
    assert report.dropped["exact duplicate"] == len(lemur) - len({r["sha256"] for r in lemur}) == 2
    assert report.kept + report.near_duplicates == 2215
    assert 100 < report.kept < 1000  # "a few hundred near-duplicate clusters"
    with db.transaction() as session:
        stats = corpus_stats(session)
    assert stats["corpus_programs"] == stats["clusters"] == report.kept
    assert stats["programs"] == 2215 and stats["chat_examples"] == 2 * report.kept


def test_corpus_has_no_near_duplicate_pairs_and_members_point_to_better_ranked(full_db) -> None:
    db, _ = full_db
    with db.transaction() as session:
        index = load_index(session, CONFIG.novelty)
        members = session.execute(select(Program.id, Program.cifar10_epoch1_accuracy,
                                         Program.duplicate_of_id, Program.duplicate_similarity)
                                  .where(Program.duplicate_of_id.is_not(None))).all()
        accuracy = dict(session.execute(select(Program.id, Program.cifar10_epoch1_accuracy)).all())
        signature = {pid: np.frombuffer(blob, dtype="<u4") for pid, blob in session.execute(
            select(ProgramSignature.program_id, ProgramSignature.signature))}
    values = index.values
    for i in range(len(values)):
        matches = (values == values[i]).sum(axis=1)
        matches[i] = 0
        assert matches.max() / values.shape[1] <= TAU
    for member_id, member_accuracy, representative, similarity in members:
        assert similarity > TAU
        assert estimated_jaccard(signature[member_id], signature[representative]) == similarity
        if member_accuracy is not None:  # ranked by accuracy first, unknown accuracy last
            assert accuracy[representative] is not None
            assert accuracy[representative] >= member_accuracy


def test_reimport_changes_nothing(full_db) -> None:
    db, _ = full_db
    before = table_dump(db)
    with db.transaction() as session:
        report = import_lemur(session, LEMUR_JSONL, CONFIG.novelty)
    assert report.kept == 0 and report.near_duplicates == 0
    assert report.dropped == {"already in corpus": 2217}
    assert table_dump(db) == before


def test_restart_gives_identical_answers(full_db, lemur: list[dict]) -> None:
    db, _ = full_db
    queries = [r["code"] for r in lemur[::97]] + ["import torch\n"]
    with db.transaction() as session:
        first = load_index(session, CONFIG.novelty)
    reopened = open_database(Path("unused"), db.url)
    with reopened.transaction() as session:
        second = load_index(session, CONFIG.novelty)
    reopened.close()
    assert np.array_equal(first.values, second.values) and first.names == second.names
    for code in queries:
        a = first.nearest(first.hasher.signature(code).values)
        b = second.nearest(second.hasher.signature(code).values)
        assert (a.similarity, a.name, a.key) == (b.similarity, b.name, b.key)


# --- broken input, transactions, checkouts -----------------------------------------------------

def test_broken_input_is_reported_with_location_and_skipped(tmp_path: Path, lemur: list[dict]) -> None:
    good, other = lemur[0], lemur[500]
    source = write_jsonl(tmp_path / "broken.jsonl", [
        good,
        "{not json",
        "[1, 2]",
        {"name": "NoCode", "stats": []},
        {**other, "name": "Broken", "code": "def f(:\n    pass\n", "sha256": "x"},
        {**other, "name": "Segmenter", "stats": [{"task": "img-segmentation"}]},
        other,
    ])
    db = open_database(tmp_path)
    with db.transaction() as session:
        report = import_lemur(session, source, CONFIG.novelty)
    locations = {p.location: p.message for p in report.problems}
    assert "invalid JSON" in locations["broken.jsonl:2"]
    assert "not a JSON object" in locations["broken.jsonl:3"]
    assert "missing 'code'" in locations["broken.jsonl:4"]
    assert "does not parse" in locations["broken.jsonl:5"] and "line 1" in locations["broken.jsonl:5"]
    assert report.read == 4
    assert report.dropped["code does not parse"] == 1
    assert report.dropped["not image-classification"] == 1
    assert report.kept + report.near_duplicates == 2
    db.close()


def test_truncated_gzip_and_missing_file_are_reported(tmp_path: Path, lemur: list[dict]) -> None:
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in lemur[:40]).encode())
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(data[: len(data) // 2])
    db = open_database(tmp_path)
    with db.transaction() as session:
        report = import_lemur(session, truncated, CONFIG.novelty)
        missing = import_lemur(session, tmp_path / "nope.jsonl", CONFIG.novelty)
    assert 0 < report.read < 40
    assert any("truncated or corrupt" in p.message and p.location.startswith("cut.jsonl.gz:")
               for p in report.problems)
    assert missing.read == 0 and "cannot read" in missing.problems[0].message
    db.close()


def test_import_is_one_transaction(tmp_path: Path, subset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.corpus.importing as corpus_module

    def failing_store(*args, **kwargs):
        raise RuntimeError("disk full")

    db = open_database(tmp_path)
    monkeypatch.setattr(corpus_module, "store_signature", failing_store)
    with pytest.raises(RuntimeError):
        with db.transaction() as session:
            import_lemur(session, subset, CONFIG.novelty)
    with db.transaction() as session:
        assert session.scalar(select(Program.id)) is None
    db.close()


def test_nn_dataset_checkout(tmp_path: Path, lemur: list[dict]) -> None:
    root = tmp_path / "nn-dataset"
    models, stat = root / "ab" / "nn" / "nn", root / "ab" / "nn" / "stat"
    models.mkdir(parents=True)
    by_name = {r["name"]: r for r in lemur}
    for name in ("AlexNet", "ResNet", "DenseNet"):
        (models / f"{name}.py").write_text(by_name[name]["code"])
    (models / "__init__.py").write_text("")
    (models / "TextModel.py").write_text("import torch\n")
    for name, trials in (("AlexNet", [0.31, 0.42]), ("ResNet", [0.2])):
        run = stat / f"img-classification_cifar-10_acc_{name}"
        run.mkdir(parents=True)
        (run / "1.json").write_text(json.dumps([{"accuracy": a, "lr": 0.01} for a in trials]))
    (stat / "img-classification_mnist_acc_DenseNet").mkdir(parents=True)
    (stat / "txt-generation_wiki_loss_TextModel").mkdir(parents=True)
    bad = stat / "img-classification_cifar-10_acc_DenseNet"
    bad.mkdir()
    (bad / "1.json").write_text("{oops")

    db = open_database(tmp_path / "work")
    with db.transaction() as session:
        report = import_lemur(session, root, CONFIG.novelty)
        accuracy = dict(session.execute(select(Program.name, Program.cifar10_epoch1_accuracy)).all())
        origins = set(session.scalars(select(Program.origin)))
    assert report.read == 4 and report.kept == 3
    assert report.dropped == {"not image-classification": 1}
    assert accuracy == {"AlexNet": 0.42, "ResNet": 0.2, "DenseNet": None}
    assert "ab/nn/nn/AlexNet.py" in origins
    assert [p.location for p in report.problems] == \
        ["ab/nn/stat/img-classification_cifar-10_acc_DenseNet/1.json"]
    db.close()


def test_signatures_for_other_novelty_settings_are_computed_once_and_stored(tmp_path: Path,
                                                                            subset: Path) -> None:
    db = open_database(tmp_path)
    with db.transaction() as session:
        report = import_lemur(session, subset, CONFIG.novelty)
    other = dataclasses.replace(CONFIG.novelty, shingle_size=5)
    with db.transaction() as session:
        index = load_index(session, other)
    with db.transaction() as session:
        again = load_index(session, other)
        schemes = Counter(session.scalars(select(ProgramSignature.scheme)))
    assert len(index) == len(again) == report.kept
    assert np.array_equal(index.values, again.values)
    assert schemes[index.hasher.key] == report.kept and index.hasher.key.startswith("tok1-k5-")
    db.close()


# --- selections, stats, export -----------------------------------------------------------------

def test_a_selected_program_joins_the_loaded_index_incrementally(tmp_path: Path, subset: Path) -> None:
    """The loop adds its selections to the corpus index it loads (orchestrator.loop.training_set);
    the stored corpus stays the seed programs only."""
    db = open_database(tmp_path)
    with db.transaction() as session:
        import_lemur(session, subset, CONFIG.novelty)
    code = "import torch\nimport torch.nn as nn\n\nclass Net(nn.Module):\n    pass  # generated\n"
    with db.transaction() as session:
        index = load_index(session, CONFIG.novelty)
        size = len(index)
        index.add("cycle-1/sample-7", index.hasher.signature(code).values)
        assert len(index) == size + 1
        assert index.nearest(index.hasher.signature(code).values).name == "cycle-1/sample-7"
        stats = corpus_stats(session)
        assert len(load_index(session, CONFIG.novelty)) == size == stats["corpus_programs"]
    assert set(stats["by_source"]) == {"lemur"}
    db.close()


def test_chat_examples_follow_the_papers_scheme(tmp_path: Path, subset: Path) -> None:
    db = open_database(tmp_path)
    with db.transaction() as session:
        report = import_lemur(session, subset, CONFIG.novelty)
        examples = list(chat_examples(session, CONFIG.evaluation.param_budget))
        first_code = session.scalar(select(Program.code).where(Program.duplicate_of_id.is_(None))
                                    .order_by(Program.id))
    assert len(examples) == 2 * report.kept
    cifar, mnist = examples[0]["messages"], examples[1]["messages"]
    assert [m["role"] for m in cifar] == ["system", "user", "assistant"]
    assert "CIFAR-10" in cifar[1]["content"] and "(N, 3, 32, 32)" in cifar[1]["content"]
    assert "MNIST" in mnist[1]["content"] and "(N, 1, 28, 28)" in mnist[1]["content"]
    assert "500,000" in cifar[1]["content"]
    assert cifar[2] == mnist[2]
    assert cifar[2]["content"] == f"```python\n{first_code.strip()}\n```"
    db.close()


# --- command line ------------------------------------------------------------------------------

def test_cli_import_stats_export_novelty(tmp_path: Path, subset: Path, lemur: list[dict]) -> None:
    runner = CliRunner()
    workdir = tmp_path / "runs"
    result = runner.invoke(corpus_cli, ["import", "--lemur", str(subset), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "read 37 programs" in result.output and "new corpus programs" in result.output
    assert (workdir / "nasloop.db").is_file()

    stats = runner.invoke(corpus_cli, ["stats", "--json", "--workdir", str(workdir)])
    assert stats.exit_code == 0, stats.output
    counts = json.loads(stats.output)
    assert counts["programs"] == 37

    out = tmp_path / "chat.jsonl"
    export = runner.invoke(corpus_cli, ["export", "--format", "chat-jsonl", str(out),
                                        "--workdir", str(workdir)])
    assert export.exit_code == 0, export.output
    lines = out.read_text().splitlines()
    assert len(lines) == counts["chat_examples"]
    assert set(json.loads(lines[0])) == {"messages"}

    alexnet = tmp_path / "alexnet_copy.py"
    alexnet.write_text("# copied\n" + next(r["code"] for r in lemur if r["name"] == "AlexNet"))
    novel = tmp_path / "tiny.py"
    novel.write_text("import torch\nprint(torch.zeros(2))\n")
    result = runner.invoke(novelty_cli, ["--json", "--workdir", str(workdir), str(alexnet), str(novel)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert records[0]["nn_jaccard_train"] == 1.0 and records[0]["near_dup_text_train"]
    assert records[0]["nearest_train"] == "AlexNet"
    assert not records[1]["near_dup_text_train"] and records[1]["nn_jaccard_train"] < 0.5


def test_cli_database_url_from_environment(tmp_path: Path, subset: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = CliRunner().invoke(corpus_cli, ["import", "--lemur", str(subset),
                                             "--workdir", str(tmp_path / "runs")],
                                env={"NASLOOP_DB_URL": url})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (tmp_path / "runs" / "nasloop.db").exists()


def test_cli_import_of_unreadable_source_fails(tmp_path: Path) -> None:
    (tmp_path / "not-a-checkout").mkdir()
    result = CliRunner().invoke(corpus_cli, ["import", "--lemur", str(tmp_path / "not-a-checkout"),
                                             "--workdir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert "not an nn-dataset checkout" in result.output and "nothing could be read" in result.output
