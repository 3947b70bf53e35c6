"""The `nasloop` command: thin click subcommands over the orchestrator's library API.

Each command group lives in its own module under `orchestrator/commands/` and is registered here.
"""

from __future__ import annotations

import click

from orchestrator.commands.dashboard import dashboard
from orchestrator.commands.data import data
from orchestrator.commands.evaluate import evaluate
from orchestrator.commands.images import images
from orchestrator.commands.report import report
from orchestrator.commands.corpus import corpus
from orchestrator.commands.cycle import cycle, export, status
from orchestrator.commands.novelty import novelty
from orchestrator.commands.llm import llm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nasloop")
def main() -> None:
    """nasloop: a code LLM as a self-improving, sandboxed designer of neural architectures."""


main.add_command(data)
main.add_command(evaluate)
main.add_command(images)
main.add_command(report)
main.add_command(corpus)
main.add_command(cycle)
main.add_command(status)
main.add_command(export)
main.add_command(novelty)
main.add_command(llm)
main.add_command(dashboard)


if __name__ == "__main__":
    main()
