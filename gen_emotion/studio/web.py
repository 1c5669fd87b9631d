"""What the studio's app and its routes share about requests: the login cookie's name, a POSTed form's fields,
whether a POST comes from the studio's own pages, a redirect target that stays on the site."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

COOKIE = "gen_emotion_studio"


async def form_fields(request: Any) -> dict[str, str]:
    """A POSTed form's fields (application/x-www-form-urlencoded), each its last value."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}


def same_origin(request: Any) -> bool:
    """Whether a POST comes from the studio's own pages (its Origin is this host), not another site's form."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser (a script with the key)
    return origin.split("://", 1)[-1] == request.headers.get("host", "")


def local(target: str) -> str:
    """A redirect target that stays on this site: a path starting with one ``/``."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
