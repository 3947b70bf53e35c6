"""Evaluating untrusted programs: the contract check on the source, the recorded protocol from which
every container job and limit is derived, the Evaluator and Checker, host-side reading of container
outputs, scoring (labels never leave the host), and `evaluate_files` / `check_files`.

Imports `contracts`, `config`, `data`, `containers` and `executors` (where the phases run); never the
corpus, the loop or the store.
"""
