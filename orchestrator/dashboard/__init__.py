"""`nasloop dashboard`: a small read-only web app over the experiment database.

`readonly` opens the database for reading only, `queries` turns it into JSON-ready dicts (statistics
from `orchestrator.report`), `diff` pairs a candidate's lines with its nearest neighbour's, `markup`
is the one place untrusted text becomes HTML, `charts` renders the figures, and `app` serves pages,
their JSON endpoints and the figures. Imports `store` (read-only) and `report`; never the loop.
"""

from orchestrator.dashboard.app import create_app
from orchestrator.dashboard.readonly import DashboardError, ReadOnlyDatabase, open_readonly

__all__ = ["DashboardError", "ReadOnlyDatabase", "create_app", "open_readonly"]
