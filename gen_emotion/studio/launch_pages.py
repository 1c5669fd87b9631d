"""The launch routes (``studio --allow-launch`` only; 404 otherwise): the form, starting a job, its page with the
live tail of its output, its state as JSON for that page, and stop.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations as objects.
"""

from typing import Any

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.studio.folders import holder


def register_launch(app: Any, studio: Any) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse, RedirectResponse

    from gen_emotion.studio.jobs import shipped_recipes
    from gen_emotion.studio.paths import PathRefused
    from gen_emotion.studio.web import form_fields

    jobs = studio.jobs

    def allowed() -> None:
        if not studio.options.allow_launch:
            raise PathRefused("launching is off: start the studio with --allow-launch")

    @app.get("/launch")
    def launch_page() -> Any:
        allowed()
        return studio.page("launch.html", recipes=shipped_recipes(), jobs=jobs.all(), values={}, title="launch")

    @app.post("/launch")
    async def launch(request: Request) -> Any:
        allowed()
        form = await form_fields(request)
        values = {key: form.get(key, "") for key in ("command", "recipe", "out", "data", "folds", "overrides")}
        try:
            job = jobs.launch(**values)
        except GenEmotionError as err:  # a refused launch: the form again, saying why
            return studio.page(
                "launch.html",
                400,
                recipes=shipped_recipes(),
                jobs=jobs.all(),
                values=values,
                problem=str(err),
                title="launch",
            )
        return RedirectResponse(f"/job/{job.id}", status_code=303)

    @app.get("/job/{job_id}")
    def job_page(job_id: str) -> Any:
        allowed()
        job = jobs.get(job_id)
        return studio.page("job.html", job=job, tail=jobs.tail(job_id), title=f"job {job.out}")

    @app.get("/api/job/{job_id}")
    def job_state(job_id: str) -> Any:
        allowed()
        job = jobs.get(job_id)
        folder = studio.root.real / job.out
        state = (
            "running"
            if job.ended is None
            else "stopped"
            if job.stopped
            else ("finished" if job.returncode == 0 else "failed" if job.returncode is not None else "ended")
        )
        return JSONResponse(
            {
                "state": state,
                "returncode": job.returncode,
                "tail": jobs.tail(job_id),
                "out": job.out,
                "locked": holder(folder) is not None,
            }
        )

    @app.post("/job/{job_id}/stop")
    def stop(job_id: str) -> Any:
        allowed()
        jobs.stop(job_id)
        return RedirectResponse(f"/job/{job_id}", status_code=303)
