"""The studio's routes: runs, a run, errors (and its CSV), compare, try it, launch and jobs, login. Each handler
resolves the folder it is given through ``RunsRoot.resolve`` and hands the gathering to ``folders``, ``rows``,
``errors_view``, ``compare``, ``curves``, ``tryit`` or ``jobs``; the page is a template.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects.
"""

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import read_json
from gen_emotion.core.logs import LOG_FILE
from gen_emotion.runs.folder import (
    DATA_FILE,
    FOLDER_METRICS,
    FOLDS_DIR,
    RECIPE_FILE,
    RUN_METRICS,
    read_folder_metrics,
    read_run_metrics,
)
from gen_emotion.scoring.run_metrics import EnsembleMetrics
from gen_emotion.studio import charts
from gen_emotion.studio.folders import SORT_KEYS, all_rows, filter_rows, holder, read_row, sort_rows

REFRESH_S = 5
LOG_LINES = 40


def _tail(path: Path, lines: int = LOG_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 16384))
            return "\n".join(handle.read().decode("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _text(path: Path, limit: int = 200_000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit]
    except OSError:
        return ""


def run_details(studio: Any, folder: Path) -> dict[str, Any]:
    """What the run page shows: the row, the per-label chart, the curves, the recipe, data.json, the folds or
    members; nothing here loads a model."""
    from gen_emotion.studio.curves import folder_curves
    from gen_emotion.studio.rows import member_path

    root = studio.root
    row = read_row(root.real, folder)
    details: dict[str, Any] = {"row": row, "problems": []}
    per_label, thresholds, names = {}, {}, ()
    try:
        if (folder / RUN_METRICS).is_file():
            metrics = read_run_metrics(folder)
            per_label = metrics.held_out.get("per_label", {})
            thresholds = (metrics.probabilities or {}).get("thresholds", {})
            details["figures"] = {
                "held-out macro-F1 (base decision)": metrics.held_out.get("macro_f1"),
                "held-out macro-F1 as submitted": metrics.held_out_final_macro_f1,
                "with thresholds, cross-validated (honest)": (metrics.probabilities or {}).get(
                    "thresholded_macro_f1_cv"
                ),
                "micro-F1": metrics.held_out.get("micro_f1"),
                "Jaccard": metrics.held_out.get("jaccard"),
            }
            details["facts"] = {
                "decision": metrics.decision,
                "held-out rows": metrics.held_out.get("rows"),
                "test rows": metrics.test_rows,
                "timings": metrics.timings,
                "training": metrics.training,
            }
        elif (folder / FOLDER_METRICS).is_file():
            metrics = read_folder_metrics(folder)
            per_label, thresholds = metrics.per_label, metrics.thresholds
            details["figures"] = {
                "out-of-fold macro-F1 (tuned thresholds)": metrics.macro_f1,
                "honest (thresholds cross-validated)": metrics.macro_f1_thresholds_cv,
                "at 0.5": metrics.macro_f1_at_0_5,
                "micro-F1": metrics.micro_f1,
                "Jaccard": metrics.jaccard,
            }
            if isinstance(metrics, EnsembleMetrics):
                members = []
                for member in metrics.members:
                    where = member_path(root, folder, member)
                    members.append({"member": member, "link": root.relative(where) if where is not None else None})
                details["members"] = members
            else:
                details["per_fold"] = metrics.per_fold
        names = tuple(per_label)
    except GenEmotionError as err:
        details["problems"].append(str(err))
    if names:
        details["f1_chart"] = charts.per_label_chart(per_label, thresholds or {}, names)
        details["per_label"] = [{"label": n, **per_label[n], "threshold": (thresholds or {}).get(n)} for n in names]
    points = folder_curves(folder)
    if points:
        details["curves_chart"] = charts.curves_chart(points)
    if (folder / FOLDS_DIR).is_dir():
        details["folds"] = [
            {"name": p.name, "done": (p / "fold.json").is_file(), "summary": _fold_summary(p)}
            for p in sorted((folder / FOLDS_DIR).glob("fold-*"))
        ]
    details["recipe"] = _text(folder / RECIPE_FILE)
    details["data"] = _text(folder / DATA_FILE)
    details["log"] = _tail(folder / LOG_FILE)
    details["holder"] = holder(folder)
    return details


def _fold_summary(fold: Path) -> dict[str, Any]:
    try:
        return read_json(fold / "fold.json", "a cv fold's figures") if (fold / "fold.json").is_file() else {}
    except GenEmotionError:
        return {}


def register(app: Any, studio: Any) -> None:
    from fastapi import Query, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

    from gen_emotion.studio.errors_view import KINDS, PER_PAGE, SORTS, to_csv
    from gen_emotion.studio.errors_view import Query as ErrorsQuery
    from gen_emotion.studio.errors_view import page as errors_page
    from gen_emotion.studio.web import COOKIE, form_fields, local

    root = studio.root

    @app.get("/")
    def runs(
        sort: Annotated[str, Query(max_length=20)] = "when",
        desc: Annotated[int, Query(ge=0, le=1)] = 1,
        q: Annotated[str, Query(max_length=200)] = "",
        kind: Annotated[str, Query(pattern="^(|run|cv|ensemble)$")] = "",
        state: Annotated[str, Query(pattern="^(|finished|running|failed|unreadable)$")] = "",
    ) -> Any:
        if sort not in SORT_KEYS:
            raise _bad(f"sort={sort!r}: one of {', '.join(SORT_KEYS)}")
        started = time.perf_counter()
        everything = all_rows(root.real)
        rows = sort_rows(filter_rows(everything, q, kind, state), sort, bool(desc))
        return studio.page(
            "runs.html",
            rows=rows,
            total=len(everything),
            sort=sort,
            desc=desc,
            q=q,
            kind=kind,
            state=state,
            sort_keys=SORT_KEYS,
            took=time.perf_counter() - started,
            root=str(root.given),
            refresh=REFRESH_S if any(r.state == "running" for r in rows) else None,
            title="Runs",
        )

    @app.get("/run/{folder:path}")
    def run_page(folder: str) -> Any:
        path = root.resolve(folder)
        details = run_details(studio, path)
        running = details["row"].state == "running"
        return studio.page(
            "run.html", folder=folder, d=details, refresh=REFRESH_S if running else None, title=folder or "."
        )

    def errors_query(label: str, kind: str, q: str, sort: str, page: int, per: int) -> ErrorsQuery:
        return ErrorsQuery(label=label, kind=kind, q=q, sort=sort, page=page, per=per)

    @app.get("/errors/{folder:path}")
    def errors(
        folder: str,
        label: Annotated[str, Query(max_length=100)] = "",
        kind: Annotated[str, Query(max_length=10)] = "all",
        q: Annotated[str, Query(max_length=500)] = "",
        sort: Annotated[str, Query(max_length=20)] = "id",
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        per: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Any:
        from gen_emotion.studio.rows import held_out_rows

        started = time.perf_counter()
        rows = held_out_rows(root, root.resolve(folder))
        query = errors_query(label, kind, q, sort, page, per)
        shown = errors_page(rows, query)
        params = {"label": label, "kind": kind, "q": q, "sort": sort, "per": per}
        return studio.page(
            "errors.html",
            folder=folder,
            rows=rows,
            shown=shown,
            query=query,
            params=params,
            kinds=KINDS,
            sorts=SORTS,
            per_page=PER_PAGE,
            took=time.perf_counter() - started,
            title=f"errors: {folder}",
        )

    @app.get("/errors.csv/{folder:path}")
    def errors_csv(
        folder: str,
        label: Annotated[str, Query(max_length=100)] = "",
        kind: Annotated[str, Query(max_length=10)] = "all",
        q: Annotated[str, Query(max_length=500)] = "",
        sort: Annotated[str, Query(max_length=20)] = "id",
    ) -> Any:
        from gen_emotion.studio.rows import held_out_rows

        rows = held_out_rows(root, root.resolve(folder))
        text = to_csv(rows, errors_query(label, kind, q, sort, 1, PER_PAGE[0]))
        name = (folder.strip("/").replace("/", "_") or "runs") + "-errors.csv"
        return PlainTextResponse(
            text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{quote(name)}"'}
        )

    @app.get("/compare")
    def compare_page(f: Annotated[list[str], Query(max_length=400)] = []) -> Any:  # noqa: B006 (FastAPI's default)
        from gen_emotion.studio.compare import compare

        if len(f) < 2:
            raise _bad("compare: select two or more folders on the runs page (f=...&f=...)")
        if len(f) > 8:
            raise _bad("compare: at most 8 folders at once")
        found = compare(root, f)
        chart = charts.compare_chart(found["values"], found["labels"])
        return studio.page("compare.html", c=found, chart=chart, title="compare")

    @app.get("/try/{folder:path}")
    def try_page(folder: str) -> Any:
        loaded = root.resolve(folder) in studio.models.loaded
        return studio.page("try.html", folder=folder, loaded=loaded, title=f"try {folder}")

    @app.post("/api/try/{folder:path}")
    async def try_api(folder: str, request: Request) -> Any:
        import asyncio

        path = root.resolve(folder)
        body = await request.json() if "json" in request.headers.get("content-type", "") else {}
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return JSONResponse({"error": 'send {"texts": ["...", ...]}'}, status_code=400)
        try:
            found = await asyncio.to_thread(studio.models.predict, path, texts)
        except GenEmotionError as err:
            return JSONResponse({"error": str(err)}, status_code=409)
        values = []
        for i, row in enumerate(found):
            shown = f"{i + 1}. {row['text'][:60]}"
            for name in row["names"]:
                probability = (row["probabilities"] or {}).get(name)
                decided = "yes" if name in row["labels"] else "no"
                values.append({"text": shown, "label": name, "probability": probability, "decided": decided})
        has_probs = any(row["probabilities"] for row in found)
        return {"predictions": found, "chart": charts.probability_chart(values) if has_probs else None}

    @app.get("/login")
    def login_page(next: Annotated[str, Query(max_length=400)] = "/") -> Any:
        return studio.page("login.html", next=local(next), failed=False, title="key", bare=True)

    @app.post("/login")
    async def login(request: Request) -> Any:
        import hmac

        form = await form_fields(request)
        target = local(form.get("next", "/"))
        key = studio.options.api_key
        if key is None:
            return RedirectResponse(target, status_code=303)
        if not hmac.compare_digest(form.get("key", "").encode(), key.encode()):
            return studio.page("login.html", 401, next=target, failed=True, title="key", bare=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, studio.cookie_value(), httponly=True, samesite="strict")
        return response

    from gen_emotion.studio.launch_pages import register_launch

    register_launch(app, studio)


def _bad(message: str) -> Exception:
    from gen_emotion.studio.errors_view import BadQuery

    return BadQuery(message)
