"""What one evaluation produces: a typed result with exactly one outcome, and its provenance.

A candidate is identified by the caller's integer `key` (a candidate row, a corpus program, the
position of a file on the command line); `name` is only for people (a file path, a program name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.untrusted import printable

LOG_TAIL_CHARS = 8000

# Every candidate ends in "ok" or exactly one of these ("extraction": no program in the LLM's text).
# An infrastructure fault (Docker, images, the host's own files) is never a candidate's outcome: it
# stops the run (InfraError) and the candidate is evaluated again when the run resumes.
FAILURE_KINDS = ("extraction", "syntax", "contract", "import", "instantiate", "forward", "params_over_budget",
                 "protocol", "timeout", "oom", "crash", "nonfinite", "missing_output", "invalid_output", "suspect")

# Where each recorded field comes from. "host": measured or computed by the orchestrator from
# validated data; "sandbox": counted by nasloop's runner inside the candidate's container
# (a hostile candidate could influence it; it never enters a score). A failure kind read from the
# runner's exit status (import, instantiate, forward, protocol...) is "sandbox" for that result: a
# candidate can end its own process with any status, though only ever to fail itself.
PROVENANCE = {
    "valid": "host", "failure": "host", "accuracy": "host", "holdout_accuracy": "host",
    "train_seconds": "host", "predict_seconds": "host", "check_seconds": "host", "weights_elements": "host",
    "holdout_gap": "host",
    "params": "sandbox", "learn_seconds": "sandbox", "error": "sandbox", "log_tail": "sandbox",
}


@dataclass(frozen=True)
class Submission:
    """One program to evaluate."""

    key: int
    source: bytes
    name: str = ""


@dataclass
class EvaluationResult:
    key: int
    name: str
    sha256: str
    valid: bool = False
    failure: str | None = None
    error: str | None = None
    params: int | None = None
    weights_elements: int | None = None
    accuracy: float | None = None
    holdout_accuracy: float | None = None
    train_seconds: float | None = None
    predict_seconds: float | None = None
    check_seconds: float | None = None
    learn_seconds: float | None = None
    log_tail: str = ""  # the containers' output, per phase, trimmed and escaped (untrusted text)
    gpu: int | None = None  # the GPU the containers were given (None: CPU)
    node: str = ""  # the machine whose Docker daemon ran the containers
    protocol: str = ""
    image: str = ""
    artefacts: str | None = None
    provenance: dict[str, str] = field(default_factory=lambda: dict(PROVENANCE))

    def fail(self, kind: str, message: str, decided_by: str = "host") -> EvaluationResult:
        """Record failure `kind` with its error text (candidate-influenced: trimmed and escaped);
        `decided_by`: "sandbox" when the kind came from the runner's exit status."""
        assert kind in FAILURE_KINDS, kind
        self.valid, self.failure, self.error = False, kind, printable(message, 2000)
        self.provenance["failure"] = decided_by
        return self

    @property
    def holdout_gap(self) -> float | None:
        """Test accuracy minus hold-out accuracy (a large positive gap is `suspect`)."""
        if self.accuracy is None or self.holdout_accuracy is None:
            return None
        return round(self.accuracy - self.holdout_accuracy, 6)

    def ran_on(self, node: str, gpu: int | None) -> None:
        """Record where a phase ran (on a cluster, a candidate's phases may run on different nodes)."""
        if node and node not in self.node.split(", "):
            self.node = f"{self.node}, {node}" if self.node else node
        if self.gpu is None:
            self.gpu = gpu

    def add_log(self, phase: str, tail: str) -> None:
        if tail.strip():
            self.log_tail = (self.log_tail + f"--- {phase} ---\n{tail.rstrip()}\n")[-LOG_TAIL_CHARS:]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "holdout_gap": self.holdout_gap}
