"""nasloop's host side, the control plane: configuration, datasets, the Docker layer, evaluation of
untrusted programs, the corpus and its novelty, the LLM's host side, the loop, the experiment
database, reports, and the `nasloop` CLI (`cli`, `commands`) over the library API (`api`).

Floors, bottom up (a package imports only those below it): `config`, `data`, `store` ->
`containers` -> `evaluation` -> `corpus` -> `generator` -> `loop`; `report` stands on `store`;
`api`, `commands` and `cli` on top. Candidate code never runs in this process.
"""
