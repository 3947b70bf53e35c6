"""The contracts between nasloop's trust zones: what crosses from the host into a container and back.

Standard library only, imported by all three zones: the host (`orchestrator`), the candidate
container (`sandbox`) and the LLM container (`llm`). `sandbox` and `llm` job and result dataclasses,
job-file (de)serialisation, JSON Lines and atomic writes, and the one way to parse untrusted source.
It imports nothing of nasloop's other packages.
"""
