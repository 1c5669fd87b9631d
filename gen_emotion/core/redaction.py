"""Secrets: the one list of the environment variables that hold them, and the masking of their values and of
the credentials inside URLs in whatever is printed or logged.

``python -m gen_emotion.core.redaction names`` prints the secrets' names, one a line, and ``python -m
gen_emotion.core.redaction url URL`` a URL as ``public_url`` shows it: ``runpod/entry.sh`` uses both, so a secret
is added here only.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Secret:
    """An environment variable that holds a secret: it never belongs in a recipe, and its value is masked in
    logs and printouts."""

    name: str
    to_pod: bool
    """``gen-emotion launch`` copies it from the caller's environment into the pod's."""


SECRETS = (
    Secret("HF_TOKEN", to_pod=True),
    Secret("HUGGING_FACE_HUB_TOKEN", to_pod=False),
    Secret("RUNPOD_API_KEY", to_pod=False),  # a pod gets a pod-scoped key of its own from RunPod
    Secret("WANDB_API_KEY", to_pod=True),
    Secret("RAY_AUTH_TOKEN", to_pod=False),  # a Ray cluster's shared token (runpod/sky-cluster.yaml)
    Secret("MLFLOW_TRACKING_PASSWORD", to_pod=True),  # an MLflow server's basic auth
    Secret("MLFLOW_TRACKING_TOKEN", to_pod=True),
)
SECRET_NAMES = tuple(secret.name for secret in SECRETS)
POD_SECRETS = tuple(secret.name for secret in SECRETS if secret.to_pod)
"""Copied from the caller's environment into a pod's, and masked in every printout of its request."""
MASK = "***"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def mask_url(url: str) -> str:
    """A URL safe to print: a user name and password become ``***@``, every query value ``***`` (a presigned
    URL's signature is a credential); the scheme, host, path and query keys stay."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(
        f"{key}={MASK}" if sep else key for key, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else ""))


def public_url(url: str) -> str:
    """A data URL as the pod's data step shows it: ``user:password@`` becomes ``***@`` and everything after a
    ``?`` is ``***``; a path or a URL without credentials is shown as it is."""
    base, query, _ = url.partition("?")
    scheme, sep, rest = base.partition("://")
    host = rest.split("/", 1)[0]  # user:password@ is in the host part (a password may hold an @)
    if sep and "@" in host:
        base = f"{scheme}://{MASK}@{host.rsplit('@', 1)[1]}{rest[len(host) :]}"
    return f"{base}?{MASK}" if query else base


def redact(text: str) -> str:
    """``text`` with the values of secret environment variables and the credentials inside URLs masked."""
    for name in SECRET_NAMES:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL.sub(lambda match: mask_url(match.group(0)), text)
    return text


def main(argv: list[str] | None = None) -> int:
    """``names``: the secrets' names, one a line; ``url URL``: the URL as ``public_url`` shows it."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["names"]:
        print("\n".join(SECRET_NAMES))
        return 0
    if len(args) == 2 and args[0] == "url":
        print(public_url(args[1]))
        return 0
    print("usage: python -m gen_emotion.core.redaction names | url URL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
