"""The host side of the LLM: jobs from the profile (`jobs`), running them in the LLM image or a local
subprocess (`runner`), judging a model's samples (`samples`), and the tiny local model (`tiny`).

Imports `contracts`, `llm`'s light modules (prompt, extraction), `config`, `containers`, `evaluation`
and `corpus`; never the loop.
"""
