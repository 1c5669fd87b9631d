"""Several GPUs resolve a recipe the same way for ``run``, ``cv``, ``show`` and ``launch`` (``gen_emotion.multi_gpu``):
a vLLM recipe resolved with ``--gpus 2`` holds ``generate.tensor_parallel_size=2``, and the accelerate config is
DDP under 10B and for QLoRA, FSDP for larger bf16 models. Dry resolutions: no GPU needed."""

from __future__ import annotations

import pytest
import torch

from gen_emotion.cli.parser import main
from gen_emotion.models.multi_gpu import SHARD_FROM_B, choose_strategy, resolve_for_gpus, strategy_for
from gen_emotion.pods.gpus import find_gpu
from gen_emotion.pods.plan import LaunchOptions, plan_launch


def test_choose_strategy():
    h100, l40s = find_gpu("H100 SXM").memory_gb, find_gpu("L40S").memory_gb
    assert choose_strategy(3.2, 30, None, 1, qlora=False) is None  # one GPU: no accelerate
    assert choose_strategy(3.2, 30, h100, 2, qlora=False) == "ddp"  # a small replica fits
    assert choose_strategy(14.8, 30, h100, 2, qlora=True) == "ddp"  # QLoRA cannot be sharded
    assert choose_strategy(SHARD_FROM_B, 30, h100, 2, qlora=False) == "fsdp"  # big models are sharded
    assert choose_strategy(7.0, 60, l40s, 4, qlora=False) == "fsdp"  # the replica does not fit
    assert choose_strategy(7.0, 60, None, 4, qlora=False) == "ddp"  # a card not known: the size decides


@pytest.mark.parametrize(
    ("recipe", "overrides", "tensor_parallel", "strategy"),
    [
        ("llama-3.2-3b-instruct-lora", [], 2, "ddp"),
        ("qwen2.5-14b-instruct-qlora", [], 2, "ddp"),  # QLoRA: a 4-bit replica per GPU
        ("qwen2.5-14b-instruct-qlora", ["model.load_in_4bit=false"], 2, "fsdp"),  # 14B in bf16: sharded
        ("llama-3.2-3b-instruct-lora", ["generate.tensor_parallel_size=1"], 1, "ddp"),  # an explicit size is kept
        ("llama-3.2-3b-instruct-lora", ["generate.backend=transformers"], 1, "ddp"),  # generates on one GPU
    ],
)
def test_a_recipe_resolved_for_two_gpus_is_the_one_launch_sends(recipe, overrides, tensor_parallel, strategy):
    resolved, _ = resolve_for_gpus(recipe, overrides, 2)
    assert resolved.generate.tensor_parallel_size == tensor_parallel
    assert strategy_for(resolved, 2) == strategy
    assert resolve_for_gpus(recipe, overrides, 1)[0].generate.tensor_parallel_size == 1
    plan = plan_launch(LaunchOptions(recipe=recipe, overrides=overrides, gpus=2, image="x/y:1"), {})
    assert plan.tensor_parallel == tensor_parallel and plan.strategy == strategy


def test_show_resolves_a_recipe_as_run_and_cv_with_gpus_do(capsys):
    assert main(["show", "qwen2.5-14b-instruct-qlora", "model.load_in_4bit=false", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "overrides: model.load_in_4bit=false generate.tensor_parallel_size=2:" in out
    assert "# --gpus 2: training under accelerate, config fsdp by default" in out
    assert "  tensor_parallel_size: 2 " in out
    assert main(["show", "roberta-base", "--gpus", "2"]) == 0
    assert "refused by run and cv, as task classify trains in one process" in capsys.readouterr().out


def test_run_and_cv_resolve_the_recipe_for_their_gpus_before_anything_runs(capsys):
    """Without the GPUs, ``run --gpus 2`` stops at the check of this machine: after resolving the recipe (a recipe
    whose tensor parallel size does not divide the heads is refused first, as ``launch`` refuses it)."""
    for command in ("run", "cv"):
        assert main([command, "smollm2-135m-cpu", "--gpus", "2"]) == 2
        err = capsys.readouterr().err
        assert "generate.tensor_parallel_size=2: smollm2-135m-instruct has 9 attention heads" in err, err
        if torch.cuda.device_count() < 3:  # 3 GPUs divide the heads: then the GPUs are missing
            assert main([command, "smollm2-135m-cpu", "--gpus", "3"]) == 2
            assert f"--gpus 3: this machine has {torch.cuda.device_count()} CUDA GPU(s)" in capsys.readouterr().err
