"""The loop: the cycle's phase machine (`cycle`), selection, the experiment's identity and lock, its
candidates and adapters in the database, the training set an adapter learns from, the live display,
and `run_cycles`.

Imports every package below it (`store`, `evaluation`, `corpus`, `generator`, `executors`,
`containers`, `data`); only `commands` and `api` import it.
"""
