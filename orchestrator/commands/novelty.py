"""`nasloop novelty FILE...`: each file's nearest corpus program (J_train) and near-duplicate flag."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.commands.common import (config_option, connect, db_url_option, load_profile, profile_option,
                                         workdir_option)
from orchestrator.corpus.index import load_index


@click.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per file.")
@workdir_option
@db_url_option
@profile_option
@config_option
def novelty(files: tuple[Path, ...], as_json: bool, workdir: Path, db_url: str | None,
            profile: str, config_file: Path | None) -> None:
    """MinHash-Jaccard similarity of each FILE to its nearest program in the current corpus."""
    config = load_profile(profile, config_file)
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            index = load_index(session, config.novelty)
    finally:
        db.close()
    if not len(index):
        click.echo("warning: the corpus is empty (run `nasloop corpus import` first)", err=True)
    if not as_json:
        click.echo(f"corpus: {len(index)} programs; near-duplicate above tau = {config.novelty.tau}")
    for file in files:
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{file}: cannot read: {exc}") from None
        signature = index.hasher.signature(code)
        nearest = index.nearest(signature.values)
        record = {
            "file": str(file),
            "nn_jaccard_train": nearest.similarity,
            "near_dup_text_train": nearest.similarity > config.novelty.tau,
            "nearest_train": nearest.name,
            "tokenizer_fallback": signature.tokenizer_fallback,
        }
        if as_json:
            click.echo(json.dumps(record))
        else:
            flag = "NEAR-DUPLICATE" if record["near_dup_text_train"] else "novel"
            note = "  (not valid Python: fallback tokens)" if signature.tokenizer_fallback else ""
            click.echo(f"{file}: J_train={nearest.similarity:.4f} {flag}, nearest {nearest.name}{note}")
