"""Every figure and fact the docs quote agrees with its one source, so that none can drift again:

- a recipe's time is its header's ``# time:`` line (what was measured, on what): README's results table quotes it
  as it is, every other table row that names the recipe with a time agrees with it, and `gen-emotion recipes` prints
  it; no other header line gives a time;
- a recipe's GPU memory is ``hardware.estimate_memory`` (what `gen-emotion recipes` prints): its header, README,
  docs/gpu-sizing.md's prose and its estimate table quote it;
- the run-folder table of docs/commands.md is the names ``runs/folder.py`` declares; the secret list of docs/recipes.md
  is ``redaction.SECRETS``; the recipes table lists every shipped recipe; the GPU stack docs/gpu-sizing.md names is
  the pinned one; README's claims about the Quick start rows and about probabilities are the recipes'; the bench's
  ensemble count is the bench's; no doc says "this machine", "here" or "the original study" for a measurement.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from gen_emotion.config.recipes import load_recipe
from gen_emotion.config.task_kinds import task_kind

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
MARKDOWN = [README, REPO_ROOT / "bench" / "README.md", REPO_ROOT / "prompts" / "README.md", *sorted(DOCS.glob("*.md"))]
TIME_LINE = re.compile(r"^# time: (?P<figure>(?:about )?[\d.]+(?: to [\d.]+)? min) for ", re.M)
TIME_CELL = re.compile(r"^(?:about )?(\d+(?:\.\d+)?)(?: to (\d+(?:\.\d+)?))? min\b")
MINUTES = re.compile(r"\b\d+(?:\.\d+)? ?(?:min|minutes)\b")
GIGABYTES = re.compile(r"\b(\d+(?:\.\d+)?) GB\b")


def header(path: Path) -> str:
    """The comment lines a recipe starts with."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(itertools.takewhile(lambda line: line.startswith("#"), lines))


def measured_time(path: Path) -> str | None:
    """The figure of a recipe's ``# time:`` line (``about 6 min``, ``19 to 30 min``), or None where not measured."""
    found = TIME_LINE.search(header(path))
    return found["figure"] if found else None


def table_rows(path: Path) -> list[list[str]]:
    """The cells of every Markdown table row in a file (header and rule rows included)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and line.endswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])])
    return rows


def agrees(cell: str, figure: str) -> bool:
    """Whether a table's time cell agrees with a header's figure: equal, inside its range, or within half a minute
    of an "about"."""
    low, high = (float(x) for x in (TIME_CELL.match(figure).group(1), TIME_CELL.match(figure).group(2) or 0))
    number = float(TIME_CELL.match(cell).group(1))
    if high:
        return low <= number <= high
    return abs(number - low) <= 0.5 if figure.startswith("about") else number == low


def test_every_shipped_recipe_says_its_time_once():
    for path in RECIPES:
        lines = [line for line in header(path).splitlines() if not line.startswith("# time:")]
        assert not [line for line in lines if MINUTES.search(line)], f"{path.name}: a time outside its # time: line"
        assert header(path).count("# time:") == 1, path.name
    assert measured_time(REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml") is not None


def test_every_quoted_recipe_time_is_the_one_its_header_measured():
    times = {path.stem: measured_time(path) for path in RECIPES}
    quoted = 0
    for doc in MARKDOWN:
        for cells in table_rows(doc):
            named = re.match(r"`([a-z0-9.-]+?)(?:\.yaml)?`", cells[0])
            name = named.group(1) if named else None
            if name not in times:
                continue
            for cell in cells[1:]:
                if TIME_CELL.match(cell):
                    assert times[name] is not None, f"{doc.name}: {name} quotes {cell!r}, its header measured none"
                    if doc == README:  # the results table quotes the header's figure as it is
                        assert cell == times[name], f"README: {name} {cell!r}, its header says {times[name]!r}"
                    assert agrees(cell, times[name]), f"{doc.name}: {name} {cell!r}, its header says {times[name]!r}"
                    quoted += 1
    assert quoted >= 8
    readme = README.read_text(encoding="utf-8")
    assert f"(the Quick start: {times['smollm2-135m-cpu']} on a 2-core CPU machine)" in readme


def test_gen_emotion_recipes_prints_each_header_time(capsys):
    from gen_emotion.cli.parser import main

    assert main(["recipes"]) == 0
    printed = capsys.readouterr().out
    for path in RECIPES:
        line = next(line for line in header(path).splitlines() if line.startswith("# time:"))
        assert f"time: {line.removeprefix('# time:').strip()}" in printed, path.name


def estimates() -> dict[str, object]:
    """Each GPU recipe's memory estimate (the shipped recipes that need a GPU: `gen-emotion recipes`'s GPU rows)."""
    from gen_emotion.cli.catalog import shipped_recipes
    from gen_emotion.models.hardware import estimate_memory, model_shape

    found = {}
    for row in shipped_recipes():
        if row["where"].startswith("GPU"):
            recipe = load_recipe(row["name"])
            shape = model_shape(recipe.model.name)
            found[row["name"]] = (recipe, shape, estimate_memory(recipe, shape))
            assert row["where"] == f"GPU {found[row['name']][2].need_gb:.0f} GB"
    return found


def test_gpu_memory_in_recipe_headers_and_readme_is_the_estimate():
    found = estimates()
    assert {"llama-3.2-3b-instruct-lora", "qwen2.5-14b-instruct-qlora", "qwen2.5-1.5b"} <= set(found)
    for path in RECIPES:
        quoted = GIGABYTES.findall(header(path))
        if path.stem not in found:
            assert quoted == [], f"{path.name}: quotes GPU memory but needs no GPU"
            continue
        assert quoted == [f"{found[path.stem][2].need_gb:.0f}"], f"{path.name}: {quoted} GB"
    need = {name: f"{estimate[2].need_gb:.0f}" for name, estimate in found.items()}
    for doc in (README, DOCS / "gpu-sizing.md"):
        text = " ".join(doc.read_text(encoding="utf-8").split())
        three = re.findall(r"3B LoRA recipe (?:needs )?about (\d+) GB", text)
        fourteen = re.findall(r"14B QLoRA recipe (?:needs )?about (\d+) GB", text)
        assert three == [need["llama-3.2-3b-instruct-lora"]] and fourteen == [need["qwen2.5-14b-instruct-qlora"]], doc


def test_serving_md_quotes_the_memory_of_runs_sharing_one_engine():
    """docs/serving.md's figures for several runs on one base are ``hardware.serving_memory``'s."""
    from gen_emotion.models.hardware import KNOWN_SHAPES, serving_memory

    text = " ".join((DOCS / "serving.md").read_text(encoding="utf-8").split())
    llama = load_recipe(REPO_ROOT / "recipes" / "llama-3.2-3b-instruct-lora.yaml")
    qwen = load_recipe(REPO_ROOT / "recipes" / "qwen2.5-14b-instruct-qlora.yaml")
    three, fourteen = KNOWN_SHAPES["llama-3.2-3b-instruct"], KNOWN_SHAPES["qwen2.5-14b-instruct"]
    figures = [serving_memory(runs, shape) for runs, shape in [([llama] * 2, three), ([llama], three)]]
    figures += [2 * figures[1], serving_memory([qwen] * 2, fourteen), serving_memory([qwen], fourteen)]
    quoted = "two rank-128 Llama-3.2-3B runs need about {:.1f} GB on one engine, one run alone {:.1f} GB, two servers "
    quoted += "{:.0f} GB; two Qwen2.5-14B QLoRA runs {:.1f} GB against {:.1f} GB for one"
    assert quoted.format(*figures) in text


def test_the_gpu_sizing_table_is_the_estimate():
    from gen_emotion.pods.gpus import pick_gpu

    found = estimates()
    rows = [r for r in table_rows(DOCS / "gpu-sizing.md") if r[0].startswith("`") and len(r) == 8]
    assert len(rows) >= 6
    for name, params, _method, train, generate, needs, card, checkpointing in rows:
        recipe, shape, estimate = found[name.strip("`")]
        assert params == f"{shape.params_b:.2f}B", name
        assert train == f"{estimate.train_gb:.1f}", name
        assert generate == (f"{estimate.generate_gb:.1f}" if estimate.generate_gb else "-"), name
        assert needs == f"{estimate.need_gb:.0f}", name
        gpu = pick_gpu(estimate.need_gb)
        assert card == f"{gpu.name} ({gpu.memory_gb} GB)", name
        from gen_emotion.models.hardware import estimate_memory

        again = estimate_memory(load_recipe(recipe.name, ["train.gradient_checkpointing=true"]), shape)
        assert checkpointing == f"{again.need_gb:.0f}", name


def pins() -> dict[str, str]:
    lines = (REPO_ROOT / "constraints" / "gpu-cu128.txt").read_text().splitlines()
    pairs = [line.split("#")[0].strip().split("==") for line in lines if line.split("#")[0].strip()]
    return {name.lower(): version for name, version in pairs}


def test_gpu_sizing_names_the_pinned_stack():
    text = " ".join((DOCS / "gpu-sizing.md").read_text(encoding="utf-8").split())
    pinned = pins()
    stack = text.split("the pinned GPU stack of `constraints/gpu-cu128.txt` (")[1].split(")")[0]
    named = dict(re.findall(r"([a-z][a-z0-9-]*) (\d+(?:\.\d+)+)", stack))
    assert len(named) >= 8 and {"torch", "vllm", "transformers", "deepspeed"} <= set(named)
    assert {name: pinned.get(name) for name in named} == named
    for sentence in re.split(r"(?<=[.;])\s", text):  # any other version of a pinned package says it is not the pin
        for name, version in re.findall(r"\b([a-z][a-z0-9-]*) (\d+(?:\.\d+)+)", sentence):
            if name in pinned and not pinned[name].startswith(version):
                assert "not the pinned" in sentence, (name, version, sentence)


def test_the_run_folder_table_is_what_runs_folder_declares():
    from gen_emotion.runs.folder import folder_files

    text = (DOCS / "commands.md").read_text(encoding="utf-8")
    section = text.split("## What a run writes")[1].split("\n## ")[0]
    table = {}
    for cells in table_rows_of(section):
        if cells[0] in ("file", "---"):
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            table[name] = tuple(kind.strip() for kind in cells[1].split(","))
    assert table == folder_files()
    readme = README.read_text(encoding="utf-8").split("## What a run gives you")[1].split("\n## ")[0]
    main_files = {name for cells in table_rows_of(readme)[2:] for name in re.findall(r"`([^`]+)`", cells[0])}
    assert {"submission.csv", "metrics.json", "adapter/"} <= main_files
    assert main_files <= set(table), "README's run-folder table names a file docs/commands.md does not"


def table_rows_of(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])]
        for line in text.splitlines()
        if line.startswith("|") and line.endswith("|")
    ]


def test_the_report_folder_files_are_named_in_evaluation_md():
    from gen_emotion.evaluation import report

    text = (DOCS / "evaluation.md").read_text(encoding="utf-8")
    for name in (report.F1_CHART, report.SUPPORT_CHART, report.LOSS_CHART, report.MARKDOWN, report.INDEX):
        assert f"`{name}`" in text, name


def test_the_secret_list_is_redactions():
    from gen_emotion.core.redaction import SECRET_NAMES

    text = " ".join((DOCS / "recipes.md").read_text(encoding="utf-8").split())
    listed = re.findall(r"`([A-Z_]+)`", text.split("Secrets (")[1].split(")")[0])
    assert listed == list(SECRET_NAMES)


def test_the_recipes_table_lists_every_shipped_recipe():
    listed = [cells[0].strip("`") for cells in table_rows(DOCS / "recipes.md") if cells[0].endswith(".yaml`")]
    assert sorted(listed) == sorted(path.name for path in RECIPES)


def test_the_readme_says_what_the_recipes_do():
    text = " ".join(README.read_text(encoding="utf-8").split())
    quick = load_recipe("smollm2-135m-cpu")
    assert f"LoRA-tunes SmolLM2 on {quick.data.max_train_rows:,} rows" in text
    full = " ".join(
        line.lstrip("# ") for line in header(REPO_ROOT / "recipes" / "smollm2-135m-cpu-full.yaml").splitlines()
    )
    assert f"the Quick start recipe trains on {quick.data.max_train_rows:,} of them" in full
    generative = {path.stem: load_recipe(path) for path in RECIPES}
    generative = {name: r for name, r in generative.items() if task_kind(r.task).generates_text}
    without = sorted(name for name, recipe in generative.items() if not recipe.generate.probabilities)
    claim = text.split("with `generate.probabilities: true` (every shipped generative recipe but ")[1].split(")")[0]
    assert sorted(re.findall(r"`([^`]+)`", claim)) == without and without


def test_evaluation_md_counts_the_ensembles_the_bench_tries():
    spec = importlib.util.spec_from_file_location("bench_quality", REPO_ROOT / "bench" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = len(bench.RECIPES)
    subsets = sum(len(list(itertools.combinations(range(runs), size))) for size in range(2, runs + 1))
    words = {3: "three", 4: "four", 5: "five", 6: "six"}
    text = " ".join((DOCS / "evaluation.md").read_text(encoding="utf-8").split())
    assert (
        f"chosen among {subsets * 3} (every subset of two or more of the {words[runs]} runs, three ways each)" in text
    )
    best = next(cells for cells in table_rows(DOCS / "evaluation.md") if "the best ensemble" in cells[0])
    members = re.findall(r"`([^`]+)`", best[0])
    rows = {
        re.match(r"`([^`]+)`", cells[0]).group(1) for cells in table_rows(DOCS / "evaluation.md") if cells[0][:1] == "`"
    }
    assert len(members) >= 2 and set(members) <= rows


VAGUE = re.compile(
    r"measured here|\bhere (?:for|as)\b|min here|this (?:2-core )?machine(?:'s)? (?:speed|alone)|on this \d-core|"
    r"this 2-core|on this CPU|original study|the study's|honest twin|default here",
    re.I,
)


@pytest.mark.parametrize("path", [*MARKDOWN, *RECIPES], ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_no_figure_says_here_or_this_machine(path):
    text = path.read_text(encoding="utf-8")
    assert VAGUE.findall(text) == [], "say what machine (a 2-core CPU machine) or cite the source instead"


def test_the_recipe_reference_names_every_shipped_prompt_template():
    row = next(
        line for line in (DOCS / "recipe-fields.md").read_text().splitlines() if line.startswith("| `template` |")
    )
    listed = row.split("a folder under prompts/ (")[1].split(")")[0].split(", ")
    assert listed == sorted(path.parent.name for path in (REPO_ROOT / "prompts").glob("*/user.j2"))
    assert "described" in listed
