import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from orchestrator.evaluation.outputs import OutputInvalid, read_json, read_logits, weights_elements
from orchestrator.evaluation.scoring import ScoringSet, accuracies


def test_accuracy_is_computed_in_the_original_order(tmp_path: Path) -> None:
    test_labels, holdout_labels = np.array([0, 1, 2, 3]), np.array([4, 5])
    truth = np.concatenate([test_labels, holdout_labels])
    permutation = np.array([3, 5, 0, 1, 4, 2])
    logits = np.zeros((6, 10), dtype=np.float32)
    for row, original in enumerate(permutation):
        # Predict right for every image but test image 2 (shown in row 5).
        logits[row, 9 if original == 2 else truth[original]] = 1.0
    scoring = ScoringSet(tmp_path / "x.npy", permutation, test_labels, holdout_labels)
    assert accuracies(logits, scoring) == (0.75, 1.0)


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=True)
    return path


def test_valid_logits_are_read(tmp_path: Path) -> None:
    path = _save(tmp_path / "logits.npy", np.ones((5, 10), dtype=np.float32))
    assert read_logits(path, 5, 10, 1 << 20).shape == (5, 10)


@pytest.mark.parametrize("array, kind", [
    (np.ones((5, 10), dtype=np.float64), "invalid_output"),
    (np.ones((5, 9), dtype=np.float32), "invalid_output"),
    (np.ones((4, 10), dtype=np.float32), "invalid_output"),
    (np.array([[float("nan")] * 10] * 5, dtype=np.float32), "nonfinite"),
    (np.array([[np.inf] * 10] * 5, dtype=np.float32), "nonfinite"),
    (np.array([{"x": 1}] * 5, dtype=object), "invalid_output"),
])
def test_malformed_logits_are_rejected(tmp_path: Path, array: np.ndarray, kind: str) -> None:
    path = _save(tmp_path / "logits.npy", array)
    with pytest.raises(OutputInvalid) as info:
        read_logits(path, 5, 10, 1 << 20)
    assert info.value.kind == kind


def test_pickles_are_never_loaded(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "logits.npy"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(OutputInvalid):
        read_logits(path, 5, 10, 1 << 20)
    assert not (tmp_path / "pwned").exists()


def test_symlinks_fifos_missing_and_oversized_files_are_rejected(tmp_path: Path) -> None:
    target = _save(tmp_path / "real.npy", np.ones((5, 10), dtype=np.float32))
    (tmp_path / "link.npy").symlink_to(target)
    os.mkfifo(tmp_path / "fifo.npy")
    cases = {"link.npy": "invalid_output", "fifo.npy": "invalid_output", "absent.npy": "missing_output"}
    for name, kind in cases.items():
        with pytest.raises(OutputInvalid) as info:
            read_logits(tmp_path / name, 5, 10, 1 << 20)
        assert info.value.kind == kind, name
    with pytest.raises(OutputInvalid, match="over"):
        read_logits(target, 5, 10, 10)


def test_json_and_safetensors_are_validated(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text("{not json")
    for name in ("a.json", "b.json"):
        with pytest.raises(OutputInvalid):
            read_json(tmp_path / name)
    (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
    with pytest.raises(OutputInvalid, match="safetensors"):
        weights_elements(tmp_path / "w.safetensors", 1 << 20)
    from safetensors.numpy import save_file

    save_file({"a": np.zeros((3, 4), dtype=np.float32), "b": np.zeros(5, dtype=np.float32)}, tmp_path / "ok.safetensors")
    assert weights_elements(tmp_path / "ok.safetensors", 1 << 20) == 17
