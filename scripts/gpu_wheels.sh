#!/usr/bin/env bash
# Prepare what scripts/gpu_check.py needs on a GPU machine with no internet (the lent device: PyTorch,
# transformers, accelerate and peft installed, Python 3.12): the wheels of the Python packages it lacks, and the
# real Llama-3.2 and Qwen2.5 tokenizer files from the cache (scripts/fetch_tokenizers.sh), in .gpu-site/ (ignored
# by git; carried to the machine; scripts/gpu_check.py installs the wheels there with pip --no-index). The
# bitsandbytes wheel keeps only its CUDA 13 and CPU libraries (the device's PyTorch is built for CUDA 13), so
# the folder stays well under the 64 MiB a device call carries.
#   scripts/gpu_wheels.sh [PYTHON_VERSION]     (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
site=.gpu-site
rm -rf "$site" && mkdir -p "$site/wheels"
.venv/bin/python -m pip -q --disable-pip-version-check download -d "$site/wheels" --no-deps --only-binary=:all: \
    --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -c constraints/gpu-cu128.txt \
    trl bitsandbytes xgrammar liger-kernel datasets "dill<0.4.2" "multiprocess<0.70.20" iterative-stratification \
    apache-tvm-ffi pydantic pydantic-core annotated-types typing-inspection
# bitsandbytes: drop the libraries of other CUDA versions and of ROCm/XPU from the wheel
bnb=$(ls "$site"/wheels/bitsandbytes-*.whl)
.venv/bin/python - "$bnb" <<'PY'
import re, sys, zipfile
path = sys.argv[1]
keep = re.compile(r"libbitsandbytes_(cuda13\d|cpu)\.so$")
with zipfile.ZipFile(path) as src:
    members = [(i, src.read(i)) for i in src.infolist() if not i.filename.endswith(".so") or keep.search(i.filename)]
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
    for info, data in members:
        out.writestr(info, data)
PY
cache=${GEN_EMOTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen-emotion}
names=()
for name in llama-3.2-instruct qwen2.5-instruct; do
    [ -f "$cache/tokenizers/$name/tokenizer.json" ] && names+=("$name")
done
[ ${#names[@]} -eq 0 ] || tar czf "$site/tokenizers.tar.gz" -C "$cache/tokenizers" "${names[@]}"
du -sh "$site"
