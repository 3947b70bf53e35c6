"""Host-side reading of container outputs and scoring: every candidate-written byte is bounded and
validated, and a malformed file is that candidate's failure, never an exception out of the host."""

import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from contracts.sandbox import RunnerStatus, TrainReport
from orchestrator.containers.hardened import Outputs
from orchestrator.evaluation.outputs import OutputInvalid, read_logits, read_report, read_status, read_weights
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


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()



def test_valid_logits_are_read() -> None:
    outputs = Outputs(files={"logits.npy": _npy(np.ones((5, 10), dtype=np.float32))})
    assert read_logits(outputs, "logits.npy", 5, 10, 1 << 20).shape == (5, 10)
    version_2 = io.BytesIO()
    np.lib.format.write_array(version_2, np.ones((5, 10), dtype=np.float32), version=(2, 0))
    assert read_logits(Outputs(files={"l.npy": version_2.getvalue()}), "l.npy", 5, 10, 1 << 20).sum() == 50


@pytest.mark.parametrize("array, kind", [
    (np.ones((5, 10), dtype=np.float64), "invalid_output"),
    (np.ones((5, 9), dtype=np.float32), "invalid_output"),
    (np.ones((4, 10), dtype=np.float32), "invalid_output"),
    (np.ones((10, 5), dtype=np.float32).T, "invalid_output"),  # Fortran order
    (np.ones((5, 10), dtype=">f4"), "invalid_output"),
    (np.array([[float("nan")] * 10] * 5, dtype=np.float32), "nonfinite"),
    (np.array([[np.inf] * 10] * 5, dtype=np.float32), "nonfinite"),
    (np.array([{"x": 1}] * 5, dtype=object), "invalid_output"),
])
def test_malformed_logits_are_rejected(array: np.ndarray, kind: str) -> None:
    with pytest.raises(OutputInvalid) as info:
        read_logits(Outputs(files={"logits.npy": _npy(array)}), "logits.npy", 5, 10, 1 << 20)
    assert info.value.kind == kind


@pytest.mark.parametrize("data", [
    # A header made to exhaust numpy's parser (ast.literal_eval of deeply nested tuples).
    b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{'descr': '<f4', 'shape': " + b"(" * 59000,
    b"\x93NUMPY\x03\x00" + struct.pack("<I", 2**31) + b"{",  # a 2 GiB header length
    b"\x93NUMPY\x09\x00\x00\x00",  # unknown version
    _npy(np.ones((5, 10), dtype=np.float32))[:-4],  # truncated data
    _npy(np.ones((5, 10), dtype=np.float32)) + b"\x00" * 4,  # trailing bytes
    b"",
])
def test_npy_header_bombs_and_torn_files_are_invalid(data: bytes) -> None:
    with pytest.raises(OutputInvalid) as info:
        read_logits(Outputs(files={"logits.npy": data}), "logits.npy", 5, 10, 1 << 24)
    assert info.value.kind == "invalid_output"


def test_pickles_are_never_loaded(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with pytest.raises(OutputInvalid):
        read_logits(Outputs(files={"logits.npy": pickle.dumps(Boom())}), "logits.npy", 5, 10, 1 << 20)
    assert not (tmp_path / "pwned").exists()


def test_irregular_missing_and_oversized_files_are_rejected() -> None:
    good = _npy(np.ones((5, 10), dtype=np.float32))
    outputs = Outputs(files={"logits.npy": good}, irregular=frozenset({"link.npy"}))
    cases = {"link.npy": "invalid_output", "absent.npy": "missing_output"}
    for name, kind in cases.items():
        with pytest.raises(OutputInvalid) as info:
            read_logits(outputs, name, 5, 10, 1 << 20)
        assert info.value.kind == kind, name
    with pytest.raises(OutputInvalid, match="over"):
        read_logits(outputs, "logits.npy", 5, 10, 10)


@pytest.mark.parametrize("text", [
    "[1, 2]", "{not json", '{"params": 1}', '{"params": 1, "learn_seconds": 1.0, "extra": 1}',
    '{"params": "1", "learn_seconds": 1.0}', '{"params": true, "learn_seconds": 1.0}',
    '{"params": 1, "learn_seconds": Infinity}', '{"params": 1, "learn_seconds": NaN}',
    '{"params": 1, "learn_seconds": 1' + "0" * 400 + "}",  # too large for float()
    '{"params": 1' + "0" * 30 + ', "learn_seconds": 1.0}',  # beyond int64
    '{"params": 1' + "0" * 5000 + ', "learn_seconds": 1.0}',  # beyond Python's int digit limit
    "[" * 100_000 + "]" * 100_000,  # nested deeper than the JSON decoder's recursion limit
    '{"a": ' * 60_000 + "1" + "}" * 60_000,
])
def test_malformed_reports_are_invalid_output(text: str) -> None:
    outputs = Outputs(files={"train.json": text.encode()})
    with pytest.raises(OutputInvalid) as info:
        read_report(outputs, "train.json", TrainReport)
    assert info.value.kind == "invalid_output"


def test_a_report_within_range_is_read() -> None:
    outputs = Outputs(files={"train.json": json.dumps({"params": 123, "learn_seconds": 4}).encode()})
    assert read_report(outputs, "train.json", TrainReport) == TrainReport(params=123, learn_seconds=4.0)


def test_a_status_file_is_only_text() -> None:
    assert read_status(Outputs(files={"status.json": b"[" * 100_000})) is None
    status = read_status(Outputs(files={"status.json": b'{"failure": "infra", "error": "not my fault"}'}))
    assert status == RunnerStatus(failure="infra", error="not my fault")  # text only: the kind is the exit status


def _safetensors(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_weights_are_counted_from_a_validated_header() -> None:
    from safetensors.numpy import save

    data = save({"a": np.zeros((3, 4), dtype=np.float32), "b": np.zeros(5, dtype=np.int64)})
    weights = read_weights(Outputs(files={"w": data}), "w", 1 << 20)
    assert (weights.elements, weights.tensors) == (17, 2)
    with_format = _safetensors({"__metadata__": {"format": "pt"},
                                "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8)
    assert read_weights(Outputs(files={"w": with_format}), "w", 1 << 20).elements == 2


@pytest.mark.parametrize("data, why", [
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}", "header"),
    (b"\x09\x00\x00\x00\x00\x00\x00\x00{garbage}", "not JSON"),
    (struct.pack("<Q", 2**40) + b"{}", "header"),
    (b"\x01\x00", "shorter"),
    # Capacity outside the tensors: a training set in the metadata.
    (_safetensors({"__metadata__": {"format": "pt", "data": "x" * 1000},
                   "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4), "metadata"),
    (_safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4 + b"hidden"), "beyond"),
    (_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4), "match"),
    (_safetensors({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\x00" * 8), "dtype"),
    (_safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                   "v": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4), "overlap"),
    (_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\x00" * 4), "shape"),
    (_safetensors({"w": [1, 2]}, b""), "malformed"),
    (struct.pack("<Q", 200_010) + b'{"a":' * 40_000 + b"1" + b"}" * 40_000, "not JSON"),  # nested header
])
def test_malformed_weights_are_invalid_output(data: bytes, why: str) -> None:
    with pytest.raises(OutputInvalid, match=why) as info:
        read_weights(Outputs(files={"weights.safetensors": data}), "weights.safetensors", 1 << 24)
    assert info.value.kind == "invalid_output"
