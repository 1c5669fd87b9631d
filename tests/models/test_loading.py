"""``gen_emotion.models.loading``'s device choices: ``train.bf16`` autocasts, and ``generate.dtype: bfloat16``
generates in bf16, on a CPU only where it has bf16 instructions (elsewhere bf16 is emulated, ~30x slower than fp32),
said once in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from gen_emotion.models.loading import CPU_BF16_FLAGS, bf16_autocast, cpu_has_bf16, generation_dtype, log_once


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's choice")
def test_bf16_autocast_follows_the_cpus_instructions_and_says_so_once(caplog):
    log_once.cache_clear()
    flags = Path("/proc/cpuinfo").read_text().split()
    assert cpu_has_bf16() == any(flag in flags for flag in CPU_BF16_FLAGS)
    with caplog.at_level(logging.INFO, logger="gen_emotion.models.loading"):
        assert bf16_autocast(False) is False
        assert [bf16_autocast(True) for _ in range(3)] == [cpu_has_bf16()] * 3
    said = [r.message for r in caplog.records if "train.bf16" in r.message]
    assert said == ([] if cpu_has_bf16() else [said[0]]) and (cpu_has_bf16() or "fp32" in said[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's choice")
def test_generation_dtype_is_float32_for_bfloat16_on_a_cpu_without_bf16():
    assert generation_dtype("float32") == "float32" and generation_dtype("float16") == "float16"
    assert generation_dtype("bfloat16") == ("bfloat16" if cpu_has_bf16() else "float32")
