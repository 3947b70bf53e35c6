"""The dashboard's Flask app: HTML pages, the JSON endpoints behind them, and PNG figures.

Every page is rendered from the same dict its `/api/...` endpoint returns (`queries`). Untrusted text
(code, raw LLM output, errors, logs, program names) reaches the HTML only through Jinja2's
autoescaping, after `orchestrator.untrusted.printable` made its control characters visible, or
through `markup.highlight_python` (Pygments, which escapes). A strict Content-Security-Policy allows only the
dashboard's own script and styles, so even markup that slipped through could not run inline script.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from orchestrator.dashboard import charts, queries
from orchestrator.dashboard.markup import highlight_python
from orchestrator.dashboard.readonly import ReadOnlyDatabase
from orchestrator.untrusted import printable

# Only this origin's script, styles and images; no inline script, no frames, no plugins.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# How often the pages poll for changes while open (milliseconds).
POLL_MS = 3000


def _percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}"


def _number(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _flag(value: bool | None) -> str:
    return "–" if value is None else "yes" if value else "no"


def visible(value: Any) -> Any:
    """Jinja's last step before escaping: text with its control characters made visible, and
    nothing (not "None") for a missing value."""
    if value is None:
        return ""
    return printable(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def create_app(db: ReadOnlyDatabase) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.jinja_env.finalize = visible  # control characters shown as text in every {{ ... }}
    app.jinja_env.filters.update(pct=_percent, num=_number, flag=_flag, python=highlight_python)
    app.jinja_env.globals.update(poll_ms=POLL_MS, sortable=queries.SORTABLE, db_url=db.url,
                                 experiment_figures=charts.EXPERIMENT_FIGURES,
                                 compare_figures=charts.COMPARE_FIGURES)
    cache = charts.FigureCache()
    summaries = queries.Summaries()

    def read(query: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one query in a short read transaction; 404 when it finds nothing."""
        with db.reading() as session:
            found = query(session, *args, **kwargs)
        if found is None:
            abort(404)
        return found

    def page(template: str, **context: Any) -> str:
        return render_template(template, **context)

    def png(data: bytes) -> Response:
        return Response(data, mimetype="image/png")

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Any, int]:
        if request.path.startswith("/api/"):
            return jsonify(error=exc.description), exc.code or 500
        return page("error.html", code=exc.code, message=exc.description), exc.code or 500

    @app.errorhandler(SQLAlchemyError)
    def _db_error(exc: SQLAlchemyError) -> tuple[Any, int]:
        message = f"cannot read the database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        if request.path.startswith("/api/"):
            return jsonify(error=message), 503
        return page("error.html", code=503, message=message), 503

    def cycle_args() -> dict[str, Any]:
        sort = request.args.get("sort", "candidate")
        if sort not in queries.SORTABLE:
            abort(400, f"cannot sort by {sort!r}: one of {', '.join(queries.SORTABLE)}")
        return {"outcome": request.args.get("outcome", queries.ALL), "sort": sort,
                "descending": request.args.get("order", "asc") == "desc"}

    def compare_names() -> list[str]:
        return request.args.getlist("experiment")

    # --- pages ---------------------------------------------------------------------------------

    @app.get("/")
    def experiments_page() -> str:
        return page("experiments.html", experiments=read(queries.experiments))

    @app.get("/experiments/<name>")
    def experiment_page(name: str) -> str:
        return page("experiment.html", e=read(queries.experiment, name, summaries))

    @app.get("/experiments/<name>/cycles/<int:index>")
    def cycle_page(name: str, index: int) -> str:
        return page("cycle.html", c=read(queries.cycle, name, index, **cycle_args()))

    @app.get("/experiments/<name>/cycles/<int:index>/candidates/<int:sample>")
    def candidate_page(name: str, index: int, sample: int) -> str:
        return page("candidate.html", c=read(queries.candidate, name, index, sample))

    @app.get("/experiments/<name>/adapters")
    def adapters_page(name: str) -> str:
        return page("adapters.html", a=read(queries.adapters, name))

    @app.get("/compare")
    def compare_page() -> str:
        return page("compare.html", cmp=read(queries.compare, compare_names(), summaries))

    # --- JSON ----------------------------------------------------------------------------------

    @app.get("/api/experiments")
    def experiments_json() -> Response:
        return jsonify(experiments=read(queries.experiments))

    @app.get("/api/experiments/<name>")
    def experiment_json(name: str) -> Response:
        return jsonify(read(queries.experiment, name, summaries))

    @app.get("/api/experiments/<name>/cycles/<int:index>")
    def cycle_json(name: str, index: int) -> Response:
        return jsonify(read(queries.cycle, name, index, **cycle_args()))

    @app.get("/api/experiments/<name>/cycles/<int:index>/candidates/<int:sample>")
    def candidate_json(name: str, index: int, sample: int) -> Response:
        return jsonify(read(queries.candidate, name, index, sample))

    @app.get("/api/experiments/<name>/adapters")
    def adapters_json(name: str) -> Response:
        return jsonify(read(queries.adapters, name))

    @app.get("/api/compare")
    def compare_json() -> Response:
        return jsonify(read(queries.compare, compare_names(), summaries))

    # --- figures -------------------------------------------------------------------------------

    @app.get("/experiments/<name>/figures/<kind>.png")
    def experiment_png(name: str, kind: str) -> Response:
        if kind not in charts.EXPERIMENT_FIGURES:
            abort(404)
        (found,) = read(queries.named_summaries, [name], summaries)
        summary = found[1]
        if summary.stats is None:
            abort(404, "no evaluated candidates yet")
        return png(cache.get(("experiment", name, kind, summary.version),
                             lambda: charts.experiment_figure(kind, summary)))

    @app.get("/experiments/<name>/adapters/loss.png")
    def loss_png(name: str) -> Response:
        lineage = read(queries.adapters, name)
        key = ("loss", name, *(f"{a['cycle']}:{a['adapter_sha256']}:{len(a['loss_curve'])}"
                               for a in lineage["adapters"]))
        return png(cache.get(key, lambda: charts.loss_figure(lineage["adapters"])))

    @app.get("/compare/<kind>.png")
    def compare_png(kind: str) -> Response:
        if kind not in charts.COMPARE_FIGURES:
            abort(404)
        names = compare_names()
        found = read(queries.named_summaries, names, summaries)
        stats = [s.stats for _, s in found if s.stats is not None]
        if not stats:
            abort(404, "no evaluated candidates yet")
        key = ("compare", kind, *(f"{n}:{s.version}" for n, s in found))
        return png(cache.get(key, lambda: charts.compare_figure(kind, stats)))

    return app
