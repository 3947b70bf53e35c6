"""nasloop's host side, the control plane: configuration, datasets, the Docker layer, evaluation of
untrusted programs, the corpus and its novelty, the LLM's host side, the loop, the experiment
database, reports, and the `nasloop` CLI (`cli`, `commands`) over the library API (`api`).

Floors, bottom up (a package imports only those below it; `tests/test_architecture.py` holds them):
`config`, `untrusted` (the one rule for showing untrusted text) -> `data`, `store` -> `containers`,
`report` -> `executors` (where a candidate's phases run: this machine, or a Ray cluster) -> `evaluation` -> `corpus` -> `generator` -> `loop` -> `dashboard` (reads `store` and
`report`, never the loop) -> `api` -> `commands` -> `cli`. Candidate code never runs in this process.
"""
