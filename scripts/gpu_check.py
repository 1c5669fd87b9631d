"""The GPU check: gen-emotion's CUDA-only paths on one GPU, in a few minutes, with no internet.

    scripts/gpu_wheels.sh                      # here, once: .gpu-site/ with the wheels the GPU machine lacks
    python scripts/gpu_check.py --site .gpu-site --out OUT_DIR      # on the GPU machine

It needs the repository, PyTorch with CUDA, transformers, accelerate and peft; it installs the wheels of
``.gpu-site/`` (trl, bitsandbytes, xgrammar, liger-kernel, datasets...) into a temporary folder with
``pip --no-index``, and builds its models on the spot (random weights, the real Llama-3.2-Instruct tokenizer
from ``.gpu-site/tokenizers.tar.gz``). Checks, each printed with its figures, then one JSON line:

1. the environment: GPU, driver, PyTorch/CUDA and library versions;
2. ``gen-emotion run`` with QLoRA (``model.load_in_4bit``: nf4, double quantisation) on a Llama-architecture
   model: LoRA steps in bf16 with Liger's kernels, the fit and predict steps in processes of their own, the
   free GPU memory logged when generation starts, constrained generation (xgrammar) on CUDA, greedy and sampled;
   the adapter saved in fp32 (TRL would train it in bf16);
3. the same run with LoRA on bf16 weights;
4. serving a QLoRA adapter (``--serve-steps`` steps) on the bf16 base, as by default, and on the nf4 base it was
   trained against (``generate.quantized_base``), with the transformers backend and, where the site has a vLLM
   wheel, vLLM's LoRARequest: the share of a few hundred greedy outputs the two agree on, and each one's time;
5. memory: the fit step of the two main recipes (Llama-3.2-3B LoRA; Qwen2.5-14B QLoRA with checkpointing) on
   random-weight models of their real shapes, two steps at full batch and ``train.max_length``; the peak GPU
   memory of the real code path against ``hardware.estimate_memory``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = "recipes/llama-3.2-3b-instruct-lora.yaml"


def say(text: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {text}", flush=True)


def install_site(site: Path, target: Path) -> dict[str, str]:
    """Install ``site/wheels/*.whl`` into ``target`` (offline) and unpack the tokenizers; the environment to use."""
    wheels = sorted(str(p) for p in (site / "wheels").glob("*.whl"))
    if wheels:
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target)]
        subprocess.run([*command, *wheels], check=True)
    if (site / "tokenizers.tar.gz").is_file():
        with tarfile.open(site / "tokenizers.tar.gz") as archive:
            archive.extractall(target / "tokenizers", filter="data")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(target)]), HF_HUB_OFFLINE="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def environment() -> dict:
    import torch
    import transformers

    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__}
    from importlib import metadata

    for name in ("trl", "peft", "accelerate", "bitsandbytes", "liger-kernel", "xgrammar", "datasets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # report what is missing rather than stop
            versions[name] = "missing"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        versions["gpu"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    return versions


def build_llama(target: Path, tokenizer_dir: Path, **sizes) -> Path:
    """A Llama-architecture model with random weights (seeded) and the real Llama-3.2-Instruct tokenizer."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128256,
        bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
        rope_theta=500000.0,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        **sizes,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, target / name)
    return target


def run_cli(
    env: dict, out: Path, work: Path, name: str, model: Path, overrides: list[str], timeout: float = 240
) -> dict:
    """``gen-emotion run`` on the shipped sample (its run folder in ``work``; its logs and metrics copied to
    ``out``); returns its figures and the log lines that prove the path."""
    run_dir = work / name
    command = [sys.executable, "-m", "gen_emotion.cli.parser", "run", RECIPE, f"model.name={model}", *overrides]
    command += ["--backend", "transformers", "--out", str(run_dir)]
    started = time.perf_counter()
    try:
        result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as stopped:
        (out / f"{name}.log").write_text(f"{stopped.stdout!s}{stopped.stderr!s}")
        return {"ok": False, "seconds": timeout, "error": f"stopped after {timeout} s"}
    seconds = time.perf_counter() - started
    (out / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        return {"ok": False, "seconds": seconds, "error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = (run_dir / "run.log").read_text()
    (out / f"{name}-run.log").write_text(log)
    (out / f"{name}-metrics.json").write_text(json.dumps(metrics, indent=1))
    free = [line.split("INFO ", 1)[1] for line in log.splitlines() if "GiB free" in line]
    isolated = "predict step: trainer modules loaded in this process: none" in log
    return {
        "ok": metrics["outputs"]["canonical_share"] == 1.0 and isolated and bool(free),
        "seconds": round(seconds, 1),
        "steps": metrics["training"]["steps"],
        "train_loss": metrics["training"]["train_loss"],
        "outputs_in_grammar": f"{metrics['outputs']['canonical']}/{metrics['outputs']['total']}",
        "decision": metrics["decision"],
        "generation_process_without_trainer": isolated,
        "free_memory_at_generation": free,
    }


def build_full_size(family: str, shape_key: str, target: Path, tokenizer_dir: Path) -> Path:
    """A model of the real shape of ``shape_key`` (``hardware.KNOWN_SHAPES``), random bf16 weights built on the
    GPU, saved with the real tokenizer: what ``gen-emotion run`` would download, but for its weights."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from gen_emotion.models.hardware import KNOWN_SHAPES

    shape = KNOWN_SHAPES[shape_key]
    config_class, model_class = (
        (LlamaConfig, LlamaForCausalLM) if family == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    )
    config = config_class(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        intermediate_size=shape.intermediate,
        tie_word_embeddings=shape.tied_embeddings,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = model_class(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(target)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, target / name)
    return target


def long_rows(folder: Path, rows: int = 64) -> Path:
    """Training rows whose every example, once cut to ``prompt.max_text_tokens``, fills ``train.max_length``:
    the longest tweets carrying all labels (the longest target), so each batch is the estimate's worst case."""
    from gen_emotion.core.labels import SEMEVAL

    folder.mkdir(parents=True, exist_ok=True)
    text = " ".join(["so happy and scared about tomorrow's results and honestly can't sleep at all"] * 40)
    header = ",".join(["ID", "Tweet", *SEMEVAL.names])
    lines = [f"2018-{i:05d},{text},{','.join('1' * len(SEMEVAL.names))}" for i in range(rows)]
    (folder / "train.csv").write_text("\n".join([header, *lines]) + "\n")
    test = [f"2018-9{i:04d},{text},{','.join(['NONE'] * len(SEMEVAL.names))}" for i in range(2)]
    (folder / "test.csv").write_text("\n".join([header, *test]) + "\n")
    return folder


def fill_length(recipe_path: str, overrides: list[str], data) -> list[str]:
    """The overrides plus the largest ``prompt.max_text_tokens`` whose examples still fit ``train.max_length``."""
    from gen_emotion.config.recipes import load_recipe
    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.models.loading import load_tokenizer
    from gen_emotion.training.sft import encode_rows

    def length(n: int) -> int:
        recipe = load_recipe(recipe_path, [*overrides, f"prompt.max_text_tokens={n}"])
        encoder = make_encoder(load_tokenizer(recipe.model.name, recipe.model), recipe.prompt, recipe.data)
        return len(encode_rows(data.subset([0]), encoder)[0]["input_ids"])

    limit = load_recipe(recipe_path, overrides).train.max_length
    low, high = 8, limit
    while low < high:  # the largest n with length(n) <= limit
        middle = (low + high + 1) // 2
        low, high = (middle, high) if length(middle) <= limit else (low, middle - 1)
    return [*overrides, f"prompt.max_text_tokens={low}"]


def measure_fit(
    work: Path, recipe_path: str, family: str, shape_key: str, tokenizer_dir: Path, extra: list[str]
) -> dict:
    """The recipe's real fit step (``train.train``: its loading, quantisation, Liger, checkpointing, collator) on
    a full-size random-weight model, two steps at full batch and ``max_length``; peak GPU memory against
    ``hardware.estimate_memory``."""
    import torch

    from gen_emotion.config.recipes import load_recipe
    from gen_emotion.data.sources import DataSource, read_splits
    from gen_emotion.models.hardware import CUDA_OVERHEAD_GB, KNOWN_SHAPES, estimate_memory
    from gen_emotion.training.sft import train

    started = time.perf_counter()
    model_dir = build_full_size(family, shape_key, work / shape_key, tokenizer_dir)
    built = time.perf_counter() - started
    data = read_splits(DataSource(str(long_rows(work / "long-rows")))).train
    overrides = [
        f"model.name={model_dir}",
        "train.max_steps=2",
        "train.eval_steps=2",
        "train.save_steps=2",
        "train.warmup_steps=0",
        "data.eval_rows=16",
        *extra,
    ]
    overrides = fill_length(recipe_path, overrides, data)
    recipe = load_recipe(recipe_path, overrides)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    summary = train(recipe, data, work / f"fit-{shape_key}")
    import shutil

    shutil.rmtree(model_dir, ignore_errors=True)
    estimate = estimate_memory(recipe, KNOWN_SHAPES[shape_key])
    reserved_gb = summary.get("peak_cuda_reserved_mib", 0.0) * 2**20 / 1e9
    return {
        "recipe": recipe_path,
        "overrides": [o for o in overrides if not o.startswith("model.name=")],
        "tokens_per_step": recipe.train.batch_size * recipe.train.max_length,
        "peak_allocated_gb": round(summary.get("peak_cuda_mib", 0.0) * 2**20 / 1e9, 2),
        "peak_reserved_gb": round(reserved_gb, 2),
        "estimate": {k: round(v, 2) for k, v in estimate.__dict__.items()},
        "estimate_without_overhead_over_reserved": round((estimate.train_gb - CUDA_OVERHEAD_GB) / reserved_gb, 3)
        if reserved_gb
        else None,
        "train_runtime_s": summary["train_runtime_s"],
        "build_and_save_s": round(built, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def adapter_dtypes(adapter_dir: Path) -> list[str]:
    """The dtypes of the saved adapter's tensors (``["F32"]``: trained in fp32, under QLoRA too)."""
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as saved:
        return sorted({saved.get_slice(key).get_dtype() for key in saved.keys()})  # noqa: SIM118 (not a dict)


def serving_texts(path: Path) -> Path:
    """The shipped sample's tweets (train and test, a few hundred), one per line: what the serving paths predict."""
    from gen_emotion.data.dataset import sample_data_dir
    from gen_emotion.data.formats import read_test, read_train

    texts = read_train(sample_data_dir() / "train.csv").texts + read_test(sample_data_dir() / "test.csv").texts
    path.write_text("\n".join(" ".join(text.split()) for text in texts) + "\n", encoding="utf-8")
    return path


def predict_cli(
    env: dict, out: Path, run_dir: Path, texts: Path, name: str, backend: str, overrides: list[str]
) -> dict:
    """``gen-emotion predict`` of ``texts`` with the run; its outputs and wall time (loading included)."""
    target = run_dir.parent / f"{name}.csv"
    command = [sys.executable, "-m", "gen_emotion.cli.parser", "predict", str(run_dir), *overrides]
    command += ["--input", str(texts), "--out", str(target), "--backend", backend]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    seconds = round(time.perf_counter() - started, 1)
    (out / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        return {"ok": False, "seconds": seconds, "error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    import csv

    with target.open(newline="", encoding="utf-8") as handle:
        outputs = [row["output"] for row in csv.DictReader(handle)]
    return {"ok": True, "seconds": seconds, "outputs": outputs}


def compare_serving(env: dict, out: Path, work: Path, model: Path, common: list[str], steps: int) -> dict:
    """A QLoRA adapter served on the bf16 base (today's default: a merged bf16 copy, or vLLM's LoRARequest) and on
    the nf4 base it was trained against (``generate.quantized_base``), per backend: how often the greedy outputs
    agree on a few hundred tweets, the share in the grammar, and each path's predict time."""
    from gen_emotion.core.labels import is_canonical

    longer = [o for o in common if not o.startswith("train.max_steps=")]
    run = run_cli(
        env, out, work, "serve-qlora", model, [*longer, f"train.max_steps={steps}", "model.load_in_4bit=true"]
    )
    report: dict = {"training": {k: run.get(k) for k in ("ok", "steps", "train_loss", "seconds", "error")}}
    if not run["ok"]:
        return {**report, "ok": False}
    texts = serving_texts(work / "serving.txt")
    paths = {"transformers": ([], ["generate.quantized_base=true"])}
    if subprocess.run([sys.executable, "-c", "import vllm"], env=env, capture_output=True).returncode == 0:
        paths["vllm"] = (["generate.vllm_lora=true"], ["generate.vllm_lora=true", "generate.quantized_base=true"])
    else:
        report["vllm"] = "not installed here: no vLLM wheel in the site"
    for backend, (bf16, nf4) in paths.items():
        base = predict_cli(env, out, work / "serve-qlora", texts, f"serve-{backend}-bf16", backend, bf16)
        quantized = predict_cli(env, out, work / "serve-qlora", texts, f"serve-{backend}-nf4", backend, nf4)
        figures = {"bf16_base_s": base["seconds"], "nf4_base_s": quantized["seconds"]}
        if base["ok"] and quantized["ok"]:
            pairs = list(zip(base["outputs"], quantized["outputs"]))
            figures.update(
                rows=len(pairs),
                agreement=round(sum(a == b for a, b in pairs) / len(pairs), 4),
                in_grammar=round(sum(is_canonical(b) for _, b in pairs) / len(pairs), 4),
            )
        else:
            figures["error"] = base.get("error") or quantized.get("error")
        report[backend] = figures
    report["ok"] = all(isinstance(v, str) or "error" not in v for k, v in report.items() if k != "training")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=REPO / ".gpu-site", help="the folder scripts/gpu_wheels.sh made")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="gpu-check-")))
    parser.add_argument("--fit-overrides", nargs="*", default=[], help="recipe overrides for the memory checks")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=("qlora", "lora", "serve", "fit-3b", "fit-14b"), help="checks to skip"
    )
    parser.add_argument("--serve-steps", type=int, default=60, help="QLoRA steps of the run the serving paths share")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-work-"))
    env = install_site(args.site, work / "site")
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    os.environ.update(HF_HUB_OFFLINE="1")
    report: dict = {"check": "gpu", "environment": environment()}
    say(f"environment: {report['environment']}")
    tokenizer_dir = work / "site" / "tokenizers" / "llama-3.2-instruct"
    model = build_llama(
        work / "llama-small",
        tokenizer_dir,
        hidden_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1536,
    )
    common = [
        "train.max_steps=4",
        "train.batch_size=8",
        "train.eval_steps=2",
        "train.save_steps=2",
        "train.warmup_steps=0",
        "train.liger_kernel=true",
        "data.eval_rows=16",
        "generate.batch_size=32",
        "generate.probabilities=true",
        "generate.num_samples=3",
    ]
    for name, extra in (("qlora", ["model.load_in_4bit=true"]), ("lora", [])):
        if name in args.skip:
            continue
        say(f"gen-emotion run, {name}: training and generating on CUDA")
        report[name] = run_cli(env, args.out, work, name, model, [*common, *extra])
        if name == "qlora" and report[name]["ok"]:  # the adapter trains in fp32, not TRL's bf16
            report[name]["adapter_dtypes"] = adapter_dtypes(work / name / "adapter")
            report[name]["ok"] = report[name]["adapter_dtypes"] == ["F32"]
        say(f"{name}: {report[name]}")
    if "serve" not in args.skip:
        say("serving a QLoRA adapter on the bf16 base and on the nf4 base it was trained against")
        report["serve"] = compare_serving(env, args.out, work, model, common, args.serve_steps)
        say(f"serve: {json.dumps(report['serve'])}")
    fits = (
        ("fit-3b", RECIPE, "llama", "llama-3.2-3b-instruct", "llama-3.2-instruct", []),
        ("fit-14b", "recipes/qwen2.5-14b-instruct-qlora.yaml", "qwen", "qwen2.5-14b-instruct", "qwen2.5-instruct", []),
    )
    report["memory"] = []
    for name, recipe_path, family, shape_key, tokenizer, extra in fits:
        if name in args.skip:
            continue
        say(f"memory: {recipe_path}'s fit step on a {shape_key}-shaped model at full batch and length")
        try:
            tokenizer_dir = work / "site" / "tokenizers" / tokenizer
            extra = [*extra, *args.fit_overrides]
            figures = measure_fit(work, recipe_path, family, shape_key, tokenizer_dir, extra)
        except Exception as error:  # report it and go on to the next check
            figures = {"recipe": recipe_path, "error": f"{type(error).__name__}: {error}"[:2000]}
        report["memory"].append(figures)
        say(f"memory: {json.dumps(figures)}")
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
    ok = all(report[k]["ok"] for k in ("qlora", "lora", "serve") if k in report)
    report["ok"] = ok
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
