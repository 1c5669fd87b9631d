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
3. the same run with LoRA on bf16 weights;
4. memory: a Llama-3.2-3B-shaped model, LoRA r=128 on the 7 projections, training steps at batch 16 x 256
   tokens, peak GPU memory against ``hardware.estimate_memory``, without and with gradient checkpointing.
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


def run_cli(env: dict, out: Path, work: Path, name: str, model: Path, overrides: list[str]) -> dict:
    """``gen-emotion run`` on the shipped sample (its run folder in ``work``; its logs and metrics copied to
    ``out``); returns its figures and the log lines that prove the path."""
    run_dir = work / name
    command = [sys.executable, "-m", "gen_emotion.cli", "run", RECIPE, f"model.name={model}", *overrides]
    command += ["--backend", "transformers", "--out", str(run_dir)]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
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


def measure_memory(checkpointing: bool) -> dict:
    """Peak GPU memory of LoRA training steps on a Llama-3.2-3B-shaped model, and the toolkit's estimate."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from gen_emotion.hardware import CUDA_OVERHEAD_GB, KNOWN_SHAPES, estimate_memory
    from gen_emotion.recipes import load_recipe

    recipe = load_recipe(RECIPE, ["train.liger_kernel=false", f"train.gradient_checkpointing={checkpointing}"])
    shape = KNOWN_SHAPES["llama-3.2-3b-instruct"]
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        intermediate_size=shape.intermediate,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, target_modules=recipe.lora.target_modules)
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch, length = recipe.train.batch_size, recipe.train.max_length
    ids = torch.randint(0, shape.vocab, (batch, length), device="cuda")
    labels = ids.clone()
    labels[:, : length - 8] = -100  # the loss on the answer only, as in training
    started = time.perf_counter()
    for _ in range(2):  # Adam's moments exist from the first step on
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - started) / 2
    allocated = torch.cuda.max_memory_allocated() / 1e9
    reserved = torch.cuda.max_memory_reserved() / 1e9
    estimate = estimate_memory(recipe, shape)
    del model, optimizer, loss
    torch.cuda.empty_cache()
    return {
        "gradient_checkpointing": checkpointing,
        "tokens": batch * length,
        "peak_allocated_gb": round(allocated, 2),
        "peak_reserved_gb": round(reserved, 2),
        "estimate_train_gb": round(estimate.train_gb, 2),
        "estimate_without_overhead_gb": round(estimate.train_gb - CUDA_OVERHEAD_GB, 2),
        "estimate_over_reserved": round((estimate.train_gb - CUDA_OVERHEAD_GB) / reserved, 3),
        "seconds_per_step": round(step_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=REPO / ".gpu-site", help="the folder scripts/gpu_wheels.sh made")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="gpu-check-")))
    parser.add_argument("--skip", nargs="*", default=[], choices=("qlora", "lora", "memory"), help="checks to skip")
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
        say(f"{name}: {report[name]}")
    if "memory" not in args.skip:
        report["memory"] = []
        for checkpointing in (False, True):
            say(f"memory, Llama-3.2-3B shape, LoRA r=128, batch 16 x 256, checkpointing {checkpointing}")
            report["memory"].append(measure_memory(checkpointing))
            say(f"memory: {report['memory'][-1]}")
    ok = all(report[k]["ok"] for k in ("qlora", "lora") if k in report)
    report["ok"] = ok
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
