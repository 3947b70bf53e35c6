"""The notice a host with a piped core_pattern gets (a crashing candidate can run its helper as root)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.containers.hardened import piped_core_notice


def test_a_piped_core_pattern_is_named(tmp_path: Path) -> None:
    pattern = tmp_path / "core_pattern"
    pattern.write_text("|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E\n")
    notice = piped_core_notice(pattern)
    assert notice is not None and "/usr/share/apport/apport" in notice and "core_pattern=core" in notice


def test_a_file_pattern_or_an_unreadable_one_gives_no_notice(tmp_path: Path) -> None:
    pattern = tmp_path / "core_pattern"
    pattern.write_text("core\n")
    assert piped_core_notice(pattern) is None
    assert piped_core_notice(tmp_path / "missing") is None
