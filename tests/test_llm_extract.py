"""`extract_code` on a corpus of messy model outputs."""

from __future__ import annotations

import pytest

from llm import extract_code

NET = "import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n    pass"
SHORT = "import torch\nx = 1"

CASES = {
    "plain python fence": (f"```python\n{NET}\n```", NET),
    "prose around the fence": (f"Here is my design.\n\n```python\n{NET}\n```\n\nIt uses residual blocks.", NET),
    "py tag": (f"```py\n{NET}\n```", NET),
    "Python tag, capitalised, with attributes": (f"```Python title=net.py\n{NET}\n```", NET),
    "untagged fence": (f"```\n{NET}\n```", NET),
    "tilde fence": (f"~~~python\n{NET}\n~~~", NET),
    "longest python block wins": (f"```python\n{SHORT}\n```\ntext\n```python\n{NET}\n```", NET),
    "python block beats a longer untagged one": (
        f"```\n{NET}\n# padding padding padding padding\n```\n```python\n{SHORT}\n```", SHORT),
    "python block beats a bash block": (f"```bash\npip install torch torchvision\n```\n```python\n{SHORT}\n```",
                                        SHORT),
    "only a non-python block": ("```text\nsome output\n```", "some output"),
    "unterminated fence (cut off by the token limit)": (
        f"Sure!\n```python\n{NET}\n    def forward(self, x):\n        return self.",
        f"{NET}\n    def forward(self, x):\n        return self."),
    "CRLF line endings": (f"```python\r\n{NET}\r\n```\r\n".replace("\n", "\r\n").replace("\r\r", "\r"), NET),
    "indented fence (inside a list item)": (f"1. Code:\n   ```python\n{NET}\n   ```", NET),
    "longer closing fence": (f"````python\n{NET}\n````", NET),
    "inner backticks in a string do not close": (
        "```python\ns = '```'\nimport torch\n```", "s = '```'\nimport torch"),
    "empty python block is skipped": (f"```python\n```\n```\n{NET}\n```", NET),
    "bare code, no fence": (NET, NET),
    "bare code after prose": (f"Here is the network:\n{NET}", NET),
    "bare code with trailing prose": (f"{NET}\n\nThis network has two layers.\nHope it helps!", NET),
    "bare code starting with from": (
        "from torch import nn\n\n\nclass Net(nn.Module):\n    pass",
        "from torch import nn\n\n\nclass Net(nn.Module):\n    pass"),
    "prose line starting with 'from' is skipped": (
        f"from the constraints above, a small CNN:\n{NET}", NET),
}


@pytest.mark.parametrize("text, expected", CASES.values(), ids=CASES.keys())
def test_extracts(text: str, expected: str) -> None:
    assert extract_code(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "I cannot help with that.",
    "The network should use 3x3 convolutions and batch norm.",
    "```python\n\n```",
    "import torch\n    this is indented and broken (",
    "class Net(nn.Module):\n    def forward(self, x:\n",  # broken bare code is not half-returned
    "\x00\x00\x00",
], ids=["empty", "refusal", "prose only", "empty fence", "broken bare code", "broken indented tail",
        "null bytes"])
def test_returns_none_when_there_is_no_code(text: str) -> None:
    assert extract_code(text) is None


def test_extracted_fence_code_is_returned_even_if_it_does_not_parse() -> None:
    # Parsing is the validity check's job: a fenced block is the model's answer, broken or not.
    assert extract_code("```python\ndef f(:\n```") == "def f(:"


def test_hostile_sizes_stay_fast() -> None:
    import time

    start = time.perf_counter()
    assert extract_code("import x\n" + "Prose line.\n" * 100) == "import x"
    # Trailing prose is trimmed within a bound; beyond it extraction gives up rather than crawl.
    assert extract_code("import x\n" + "Prose line.\n" * 5000) is None
    extract_code(("from x\n" + "y (\n" * 300) * 30)  # many false starts: bounded work
    assert time.perf_counter() - start < 5
