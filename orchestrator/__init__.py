"""nasloop's host-side control plane: cycle loop, database, novelty, selection, reports, CLI."""
