"""What runs in the LLM container: prompt rendering, sampling, code extraction, LoRA fine-tuning.

Importing this package stays light (no torch): the host uses the prompt and extraction helpers.
"""

from llm.extract import extract_code

__all__ = ["extract_code"]
