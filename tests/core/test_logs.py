"""The log: stderr and a run's ``run.log``, the training libraries' warnings in it too, secrets redacted."""

from __future__ import annotations

import logging

import pytest

from gen_emotion.core.logs import LIBRARY_LOGGERS, LOG_FILE, setup_logging

SECRET = "hf_not-a-real-token-0123456789"


@pytest.fixture
def clean_logging():
    """Leave the loggers as the test found them (setup_logging changes process-wide state)."""
    yield
    setup_logging(None, verbose=False)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for handler in [h for h in library.handlers if getattr(h, "gen_emotion", False)]:
            library.removeHandler(handler)
            handler.close()


def test_run_log_holds_our_lines_and_library_warnings_with_secrets_masked(tmp_path, monkeypatch, capsys, clean_logging):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    setup_logging(tmp_path)
    logging.getLogger("gen_emotion.test").info("token %s at https://user:pw@host/d?sig=abc", SECRET)
    logging.getLogger("transformers").warning("a library warning with %s", SECRET)
    logging.getLogger("transformers").info("a library info line")
    text = (tmp_path / LOG_FILE).read_text(encoding="utf-8")
    assert "INFO token *** at https://***@host/d?sig=***" in text
    assert "WARNING [transformers] a library warning with ***" in text
    assert "a library info line" not in text and SECRET not in text
    assert "token *** at" in capsys.readouterr().err  # stderr too, masked


def test_setting_up_again_adds_no_second_handler(tmp_path, capsys, clean_logging):
    setup_logging(tmp_path)
    setup_logging(tmp_path, verbose=False)
    logging.getLogger("gen_emotion.test").info("once")
    logging.getLogger("peft").warning("once too")
    text = (tmp_path / LOG_FILE).read_text(encoding="utf-8")
    assert text.count("once\n") == 1 and text.count("once too") == 1
    assert "once" not in capsys.readouterr().err  # verbose=False: nothing on stderr
