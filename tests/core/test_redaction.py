"""Secrets: the one list of their variables, and their values and the credentials in URLs masked in what is
printed or logged (``mask_url`` for logs and plans, ``public_url`` for the pod's data step)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from gen_emotion.core.redaction import POD_SECRETS, SECRET_NAMES, main, mask_url, public_url, redact

SECRET = "hf_not-a-real-token-0123456789"
DATA_URL = "https://user:secretpw@host/d.tar.gz?X-Amz-Signature=abc-signature-42"


def test_the_secrets_a_pod_gets_are_among_the_secrets():
    assert set(POD_SECRETS) < set(SECRET_NAMES)
    assert {"HF_TOKEN", "WANDB_API_KEY"} <= set(POD_SECRETS)
    assert "RUNPOD_API_KEY" in SECRET_NAMES and "RUNPOD_API_KEY" not in POD_SECRETS  # a pod gets a key of its own
    assert len(set(SECRET_NAMES)) == len(SECRET_NAMES)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://host/d.tar.gz", "https://host/d.tar.gz"),
        ("https://host/d.tar.gz?a=1&b=2&flag", "https://host/d.tar.gz?a=***&b=***&flag"),
        ("https://user:pw@host:8443/d?sig=x", "https://***@host:8443/d?sig=***"),
        ("https://user:p@ss@host/d", "https://***@host/d"),
        ("https://host/a@b/d", "https://host/a@b/d"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_redact_masks_secret_values_and_url_credentials(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    text = f"token {SECRET} and download failed: {DATA_URL} (refused)"
    assert redact(text) == "token *** and download failed: https://***@host/d.tar.gz?X-Amz-Signature=*** (refused)"


def test_redact_leaves_short_values_and_unset_secrets_alone(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "abc")  # shorter than 4: masking it would mask every "abc"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert redact("abc and nothing else") == "abc and nothing else"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:hunter2pw@127.0.0.1:9/x.tgz?sig=abc123sig", "https://***@127.0.0.1:9/x.tgz?***"),
        ("https://user:p@hunter2pw@127.0.0.1:9/x.tgz", "https://***@127.0.0.1:9/x.tgz"),  # an @ in the password
        ("https://127.0.0.1:9/a@b/x.tgz", "https://127.0.0.1:9/a@b/x.tgz"),  # an @ in the path is no password
        ("HTTPS://u:pw@host", "HTTPS://***@host"),
        ("https://host/x.tgz?", "https://host/x.tgz?***"),
        ("/data/folder", "/data/folder"),
        ("file:///data/d.tar.gz", "file:///data/d.tar.gz"),
    ],
)
def test_public_url_hides_the_credentials_and_the_whole_query(url, shown):
    assert public_url(url) == shown


def test_the_command_prints_the_names_and_a_public_url(capsys):
    assert main(["names"]) == 0
    assert capsys.readouterr().out.split() == list(SECRET_NAMES)
    assert main(["url", DATA_URL]) == 0
    assert capsys.readouterr().out == "https://***@host/d.tar.gz?***\n"
    assert main(["nope"]) == 2 and "usage:" in capsys.readouterr().err


def test_python_dash_m_lists_the_secrets():
    """What ``runpod/entry.sh`` runs to learn which variables to redact from its log."""
    result = subprocess.run(
        [sys.executable, "-m", "gen_emotion.core.redaction", "names"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    assert tuple(result.stdout.splitlines()) == SECRET_NAMES
