"""nasloop as a library: the calls the `nasloop` commands are thin over.

    from orchestrator.api import load_config, evaluate_files, run_cycles, experiment_status

- `evaluate_files(paths, config, workdir)` / `check_files(...)`: untrusted programs through the
  evaluation protocol (or the validity checks alone) in hardened containers -> `EvaluationResult`s.
- `run_cycles(workdir, config, profile, cycles, ablations)`: the loop, resumable. Where candidates run
  is the config's `[executor]` (e.g. `load_config("paper", overrides={"executor": {"kind": "ray",
  "address": "HEAD:6379"}})`), for `evaluate_files` and `check_files` too.
- `experiment_status(session)` / `export_rows(session)`: read an experiment database
  (`open_database(workdir)`), as `nasloop status` and `nasloop export` do.
- `write_report(grouped_records, settings, out)`: the paper's tables and figures.
"""

from orchestrator.config import Ablations, ExperimentConfig, load_config
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.run import check_files, evaluate_files, evaluate_many
from orchestrator.loop.run import run_cycles
from orchestrator.report import ReportSettings, write_report
from orchestrator.store.database import open_database
from orchestrator.store.readers import experiment_status, export_rows

__all__ = ["Ablations", "EvaluationResult", "ExperimentConfig", "ReportSettings", "Submission", "check_files",
           "evaluate_files", "evaluate_many", "experiment_status", "export_rows", "load_config", "open_database",
           "run_cycles", "write_report"]
