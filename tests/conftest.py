"""Shared helpers for the unit tests: tiny CSV files built in ``tmp_path`` and the shipped sample."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import tiny_models

from gen_emotion.core.labels import LABELS

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "gen_emotion" / "sample_data"
TRAIN_HEADER = ["ID", "Tweet", *LABELS]
LABEL_HEADER = ["ID", *LABELS]

pytest_plugins = ["servers"]  # the serving tests' real servers and the TF-IDF run they share (tests/servers.py)


def first_rows(source: Path, target: Path, train_rows: int, test_rows: int) -> Path:
    """A copy of the data folder ``source`` (its CSV and JSON-lines files) with the first ``train_rows`` rows of its
    training file and the first ``test_rows`` of every other file: a generation test on it generates a few dozen
    texts, not a hundred."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        keep = train_rows if path.stem == "train" else test_rows
        if path.suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            (target / path.name).write_text("".join(lines[:keep]), encoding="utf-8")
        elif path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))[: 1 + keep]
            write_rows(target / path.name, rows[0], rows[1:])
    return target


@pytest.fixture(scope="session")
def small_sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped sample's ``first_rows``: 100 training rows (10 held out as fold 0 of 10) and 24 test rows, shared
    by the session."""
    return first_rows(SAMPLE_DIR, tmp_path_factory.mktemp("data") / "small", 100, 24)


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]], delimiter: str = ",") -> Path:
    """Write ``header`` and ``rows`` with the csv module (proper quoting) and return ``path``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def sample_dir() -> Path:
    """The illustrative sample shipped with the package (300 train rows, 80 test rows)."""
    assert SAMPLE_DIR.is_dir(), SAMPLE_DIR
    return SAMPLE_DIR


@pytest.fixture
def train_csv(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``train_csv(rows, name="train.csv", header=TRAIN_HEADER)`` writes a tiny Kaggle train file."""

    def make(rows: Sequence[Sequence[object]], name: str = "train.csv", header: Sequence[str] = TRAIN_HEADER) -> Path:
        return write_rows(tmp_path / name, header, rows)

    return make


def onehot(*names: str) -> list[int]:
    """The 0/1 list with a one for each label name."""
    return [int(label in names) for label in LABELS]


# Tiny random-weight models with the real Llama-3.2-Instruct / Qwen2.5 tokenizers (tests/tiny_models.py), built
# once per session; they skip when scripts/fetch_tokenizers.sh has not put the tokenizer files in the cache.


def tiny_model_dir(spec: tiny_models.TinyModel, factory: pytest.TempPathFactory) -> Path:
    """Build the tiny model folder of ``spec`` under the session's temporary folder, or skip."""
    reason = tiny_models.missing_reason(spec)
    if reason is not None:
        pytest.skip(reason)
    return tiny_models.build(spec, factory.mktemp("models") / spec.name)


@pytest.fixture(scope="session")
def llama_instruct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-3.2-1B-Instruct folder: its real tokenizer and chat template, a tiny random LlamaForCausalLM,
    its generation defaults (do_sample, temperature 0.6, top_p 0.9, eos [128001, 128008, 128009])."""
    return tiny_model_dir(tiny_models.LLAMA_INSTRUCT, tmp_path_factory)


@pytest.fixture(scope="session")
def qwen_instruct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2.5-Instruct folder: its real tokenizer and chat template, a tiny random Qwen2ForCausalLM, its
    generation defaults (do_sample, temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05)."""
    return tiny_model_dir(tiny_models.QWEN_INSTRUCT, tmp_path_factory)


@pytest.fixture(scope="session")
def qwen_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2.5 base folder: the same tokenizer with eos ``<|endoftext|>`` and no chat template (base models
    get plain-text prompts), a tiny random Qwen2ForCausalLM, greedy generation defaults."""
    return tiny_model_dir(tiny_models.QWEN_BASE, tmp_path_factory)


HUB_REPO = "gen-emotion-test/tiny"
"""A hub id that only the ``pinned_hub`` fixture's offline hub cache holds."""


@pytest.fixture
def pinned_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llama_instruct_dir: Path, qwen_instruct_dir: Path
) -> str:
    """``HUB_REPO`` in an offline hub cache of its own, as if downloaded: its default branch (main) the tiny Llama,
    its ``pinned`` branch the tiny Qwen. A loader that drops ``model.revision`` gets the other architecture."""
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    tiny_models.publish_to_hub_cache(cache, HUB_REPO, {"main": llama_instruct_dir, "pinned": qwen_instruct_dir})
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)  # read by processes started from here (vLLM's engine)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))  # read at each call in this process
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return HUB_REPO


FAMILIES = {
    # name: (model folder fixture, or an embedded model name; the prompt template the recipes use for it)
    "llama-3.2-instruct": ("llama_instruct_dir", "default"),
    "qwen2.5-instruct": ("qwen_instruct_dir", "default"),
    "qwen2.5-base": ("qwen_base_dir", "plain"),
    "smollm2": ("smollm2-135m-instruct", "default"),
}
"""The model families the GPU recipes and the CPU default use, each with its real tokenizer and template."""


@pytest.fixture(params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """``(family, model path, prompt template)`` for each of ``FAMILIES`` (skips where tokenizers are missing)."""
    source, template = FAMILIES[request.param]
    if source.endswith("_dir"):
        path = str(request.getfixturevalue(source))
    else:
        from gen_emotion.models.loading import resolve_model

        path = resolve_model(source)
    return request.param, path, template


def masked_first_step(generator: Any, prompt: list[int]) -> Any:
    """Log-probabilities of the first answer token under the output grammar, from one forward pass of a
    ``TransformersGenerator``'s model over ``prompt`` and its compiled grammar's first mask."""
    import torch
    import xgrammar as xgr

    with torch.inference_mode():
        logits = generator.model(torch.tensor([prompt])).logits[:, -1].float()
    bitmask = xgr.allocate_token_bitmask(1, logits.shape[-1])
    xgr.GrammarMatcher(generator.compiled_grammar).fill_next_token_bitmask(bitmask)
    xgr.apply_token_bitmask_inplace(logits, bitmask)
    return logits[0].log_softmax(-1)


@pytest.fixture
def tiny_bert(tmp_path: Path) -> Path:
    """A one-layer random BERT with the embedded MiniLM's tokenizer."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from gen_emotion.models.loading import wheel_model_dir

    source, target = wheel_model_dir("all-minilm-l6-v2"), tmp_path / "tiny-bert"
    config = BertConfig.from_pretrained(
        source, num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, target / name)
    return target
