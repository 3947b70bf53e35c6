"""The loop's one error type."""


class CycleError(RuntimeError):
    """The loop cannot go on (infrastructure, a failed LLM job, a bad state); it stays resumable."""
