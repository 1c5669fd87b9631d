#!/usr/bin/env bash
# Run one gen-emotion command on a GPU pod, or with --local DIR in a folder of this machine, and leave a DONE
# or FAILED marker (exit status and the log's tail) in the run folder WORKSPACE/runs/NAME.
#
#   runpod/entry.sh [options] [COMMAND [RECIPE [OVERRIDE ...]]]
#
# COMMAND is run (default), cv or predict; RECIPE a recipe file or a shipped recipe's name; OVERRIDEs are
# section.key=value. predict predicts one file (--data, a file or URL) with the finished run NAME in
# WORKSPACE/runs/NAME (--run-name, else RECIPE's file name: the name run gave it) and writes
# runs/NAME/predictions/STEM.csv (STEM: the file's name less its suffix), its log STEM.log and marker
# STEM.DONE or STEM.FAILED beside it; its OVERRIDEs are generate.* ones. Every option falls back to an
# environment variable: that is how `gen-emotion launch` configures a pod, whose image runs this script with no
# arguments.
#   --local DIR               the workspace is DIR instead of /workspace; exit with the command's status
#                             (no sshd, no keep-alive, caches left where they are)
#   --data PATH|URL           GEN_EMOTION_DATA: a folder, a .tar.gz/.zip, file:// or http(s):// URL holding
#                             train.csv and test.csv (default: the shipped sample); predict: the file to
#                             predict (CSV/TSV with ID and Tweet, .txt...), a path or a file:// or http(s) URL,
#                             or a data folder (its test file, found as run finds it)
#   --data-id ID              GEN_EMOTION_DATA_ID: run, cv: a dataset on the hub (owner/name), given to gen-emotion
#                             as --data (datasets.load_dataset on the pod, its config from the recipe or, for
#                             SemEval-2018 Task 1, its own: gen_emotion/data/sources.py KNOWN_CONFIGS)
#   --gpus N                  GEN_EMOTION_GPUS (default: the GPUs nvidia-smi lists, else 1); N > 1 is passed to
#                             gen-emotion run/cv --gpus N, which trains with accelerate (every cv fold too) and
#                             adds generate.tensor_parallel_size=N to a vLLM recipe (predict keeps the run's own)
#   --accelerate-config X     GEN_EMOTION_ACCELERATE_CONFIG: ddp, fsdp or zero3 (recipes/accelerate/); default:
#                             gen-emotion's own choice (ddp under 10B and for QLoRA, else fsdp)
#   --folds K                 GEN_EMOTION_FOLDS: cv only, the number of folds (default: cv's own, 5)
#   --run-name NAME           GEN_EMOTION_RUN_NAME (default: the recipe's file name)
#   --force                   GEN_EMOTION_FORCE=1: run although a DONE or FAILED marker is there
#   --dry-run                 print the commands, run nothing, write nothing
# Other variables: GEN_EMOTION_COMMAND, GEN_EMOTION_RECIPE_B64 (the recipe YAML in base64, what launch sends),
# GEN_EMOTION_RECIPE (a path), GEN_EMOTION_OVERRIDES (space-separated), GEN_EMOTION_IDLE_STOP_MIN (pod: stop
# the pod this long after the run, 0 never; default 60), GEN_EMOTION_BIN (default: gen-emotion on PATH),
# GEN_EMOTION_PYTHON (default: next to GEN_EMOTION_BIN, else python3).
# The image has everything installed: this script installs nothing.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TAIL_LINES=60
SECRETS=""  # the names of the secret variables, one a line: gen_emotion.core.redaction's list (main sets it)

say() { printf '[entry %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Pod only: stay up for fetching, then stop the pod (RunPod gives each pod RUNPOD_POD_ID and a pod-scoped
# RUNPOD_API_KEY); a container whose main process exits would be restarted by RunPod.
keep_alive() {
    local minutes=${GEN_EMOTION_IDLE_STOP_MIN:-60}
    if [ "$minutes" -gt 0 ] 2>/dev/null && [ -n "${RUNPOD_POD_ID:-}" ]; then
        say "the pod stops itself in $minutes min (its /workspace volume is kept): fetch the run before"
        sleep $((minutes * 60))
        "${GEN_EMOTION_PYTHON:-python3}" -c 'import os, runpod; runpod.api_key = os.environ["RUNPOD_API_KEY"]; runpod.stop_pod(os.environ["RUNPOD_POD_ID"])' \
            || say "could not stop the pod: stop it with gen-emotion stop $RUNPOD_POD_ID"
    fi
    exec sleep infinity
}

# An error before the job could start. On a pod, exiting would make RunPod restart the container, again and
# again: keep it up instead (and let it stop itself).
die() {
    say "error: $*" >&2
    if [ -z "${LOCAL_DIR:-}" ] && [ -n "${RUNPOD_POD_ID:-}" ]; then keep_alive; fi
    exit 2
}

LOCAL_DIR="" DRY_RUN=0
DATA=${GEN_EMOTION_DATA:-}
DATA_ID=${GEN_EMOTION_DATA_ID:-}
GPUS=${GEN_EMOTION_GPUS:-}
ACCELERATE_CONFIG=${GEN_EMOTION_ACCELERATE_CONFIG:-}
RUN_NAME=${GEN_EMOTION_RUN_NAME:-}
FOLDS=${GEN_EMOTION_FOLDS:-}
FORCE=${GEN_EMOTION_FORCE:-0}
POSITIONAL=()
while [ $# -gt 0 ]; do
    case $1 in
        --local) LOCAL_DIR=${2:?--local needs a folder}; shift 2 ;;
        --data) DATA=${2?--data needs a path or URL}; shift 2 ;;
        --data-id) DATA_ID=${2:?--data-id needs a dataset id}; shift 2 ;;
        --gpus) GPUS=${2:?--gpus needs a number}; shift 2 ;;
        --accelerate-config) ACCELERATE_CONFIG=${2:?--accelerate-config needs ddp, fsdp or zero3}; shift 2 ;;
        --run-name) RUN_NAME=${2:?--run-name needs a name}; shift 2 ;;
        --folds) FOLDS=${2:?--folds needs a number}; shift 2 ;;
        --force) FORCE=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; POSITIONAL+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done

COMMAND=${POSITIONAL[0]:-${GEN_EMOTION_COMMAND:-run}}
RECIPE=${POSITIONAL[1]:-}
if [ ${#POSITIONAL[@]} -gt 2 ]; then
    OVERRIDES=("${POSITIONAL[@]:2}")
else
    read -r -a OVERRIDES <<< "${GEN_EMOTION_OVERRIDES:-}"
fi
case $COMMAND in run|cv|predict) ;; *) die "unknown command '$COMMAND': use run, cv or predict" ;; esac
case $ACCELERATE_CONFIG in ""|ddp|fsdp|zero3) ;; *) die "unknown accelerate config '$ACCELERATE_CONFIG'" ;; esac
if [ -n "$FOLDS" ]; then
    [ "$COMMAND" = cv ] || die "--folds (GEN_EMOTION_FOLDS) goes with the cv command, not '$COMMAND'"
    [[ $FOLDS =~ ^[1-9][0-9]*$ ]] || die "--folds must be a positive number, got '$FOLDS'"
fi

if [ -n "$LOCAL_DIR" ]; then
    WS=$(realpath -m "$LOCAL_DIR") || die "bad folder $LOCAL_DIR"
else
    WS=/workspace
    # Models and caches on the volume: they survive a stop/resume of the pod.
    export HF_HOME=${HF_HOME:-$WS/.cache/huggingface}
    export GEN_EMOTION_CACHE=${GEN_EMOTION_CACHE:-$WS/.cache/gen-emotion}
fi

BIN=${GEN_EMOTION_BIN:-gen-emotion}
# cv comes with the cross-validation feature: refuse it clearly where this toolkit has no such command.
"$BIN" "$COMMAND" --help >/dev/null 2>&1 || die "this gen-emotion has no '$COMMAND' command (update the image)"
BIN_DIR=$(dirname "$(command -v "$BIN" 2>/dev/null || echo "$BIN")")
if [ -z "${GEN_EMOTION_PYTHON:-}" ]; then
    if [ -x "$BIN_DIR/python" ]; then GEN_EMOTION_PYTHON=$BIN_DIR/python; else GEN_EMOTION_PYTHON=python3; fi
fi
if [ -z "$GPUS" ]; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU') || true
    [ "${GPUS:-0}" -ge 1 ] 2>/dev/null || GPUS=1
fi
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus must be a positive number, got '$GPUS'"

if [ -z "$RUN_NAME" ]; then
    if [ -n "$RECIPE" ]; then RUN_NAME=$(basename "$RECIPE" .yaml); else RUN_NAME=${GEN_EMOTION_RECIPE:+$(basename "$GEN_EMOTION_RECIPE" .yaml)}; fi
    RUN_NAME=${RUN_NAME:-run}
fi
RUN=$WS/runs/$RUN_NAME
# The DONE/FAILED markers are MARK_DIR/MARK_PREFIX{DONE,FAILED}: the run's own, or one pair per predicted file.
MARK_DIR=$RUN MARK_PREFIX="" LOG=$RUN/entry.log
if [ -n "$DATA" ] && [ -n "$DATA_ID" ]; then die "--data and --data-id both given: give one of them"; fi
if [ "$COMMAND" = predict ]; then
    [ -z "$DATA_ID" ] || die "predict takes --data FILE_OR_URL, the file to predict; --data-id is for run and cv"
    [ -n "$DATA" ] || die "predict needs --data FILE_OR_URL (GEN_EMOTION_DATA): the file to predict"
    # The file keeps its name once downloaded (its suffix tells gen-emotion its format); its stem names the rest.
    INPUT_NAME=${DATA%%[?#]*}
    INPUT_NAME=${INPUT_NAME%/}
    INPUT_NAME=$(printf '%s' "${INPUT_NAME##*/}" | tr -c 'A-Za-z0-9._-' '_')
    STEM=${INPUT_NAME%.*}
    if [ -z "$STEM" ]; then STEM=input INPUT_NAME=input$INPUT_NAME; fi
    MARK_DIR=$RUN/predictions MARK_PREFIX=$STEM. LOG=$RUN/predictions/$STEM.log
fi

# Copy stdin to stdout with the values of secret variables replaced by *** (literal match, line by line).
redact() {
    SECRET_NAMES="$SECRETS" awk '
        BEGIN { n = split(ENVIRON["SECRET_NAMES"], names, " ")
                for (i = 1; i <= n; i++) { v = ENVIRON[names[i]]; if (length(v) >= 4) secret[++k] = v } }
        { line = $0
          for (i = 1; i <= k; i++) {
              out = ""
              while ((p = index(line, secret[i])) > 0) {
                  out = out substr(line, 1, p - 1) "***"; line = substr(line, p + length(secret[i]))
              }
              line = out line
          }
          print line; fflush() }'
}

# A URL as it may be shown: user:password@ masked, its query string hidden (a presigned URL's signature is a
# credential).
public_url() {
    "$GEN_EMOTION_PYTHON" -m gen_emotion.core.redaction url "$1"
}

# Run a command, or print it in a dry run.
run_cmd() {
    if [ "$DRY_RUN" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; return 0; fi
    say "$(printf '%q ' "$@")"
    "$@"
}

# Write the recipe passed inline (base64) to a file; print the recipe argument for gen-emotion.
resolve_recipe() {
    if [ -n "$RECIPE" ]; then printf '%s\n' "$RECIPE"; return 0; fi
    if [ -n "${GEN_EMOTION_RECIPE_B64:-}" ]; then
        local path=$WS/recipes/$RUN_NAME.yaml
        if [ "$DRY_RUN" != 1 ]; then
            if ! mkdir -p "$WS/recipes" || ! printf '%s' "$GEN_EMOTION_RECIPE_B64" | base64 -d > "$path"; then
                say "error: cannot write GEN_EMOTION_RECIPE_B64 (base64 YAML) to $path" >&2; return 2
            fi
        fi
        printf '%s\n' "$path"; return 0
    fi
    if [ -n "${GEN_EMOTION_RECIPE:-}" ]; then printf '%s\n' "$GEN_EMOTION_RECIPE"; return 0; fi
    say "error: no recipe: pass RECIPE, or set GEN_EMOTION_RECIPE_B64 or GEN_EMOTION_RECIPE" >&2
    return 2
}

# Make the data a folder holding train.csv and test.csv (download and unpack as needed); print the folder.
# With a NAME (predict): the data is one file, downloaded as WS/inputs/RUN_NAME/NAME; print the file.
prepare_data() {
    local source=$1 name=${2:-} dest=$WS/data/$RUN_NAME
    [ -z "$name" ] || dest=$WS/inputs/$RUN_NAME
    if [ "$DRY_RUN" = 1 ]; then
        case ${name:+one}:$source in
            one:http://*|one:https://*) printf '%s\n' "$dest/$name" ;;
            one:*) printf '%s\n' "${source#file://}" ;;
            *) printf '%s\n' "$dest" ;;
        esac
        return 0
    fi
    # Downloads to DEST, unpacks, finds train.csv and test.csv, reuses an earlier download, masks the URL.
    "$GEN_EMOTION_PYTHON" -m gen_emotion.data.download "$source" "$dest" ${name:+"$name"}
}

# The steps of the job; their output goes, secrets redacted, to entry.log and stdout.
run_job() {
    local recipe data_dir="" overrides=("${OVERRIDES[@]}") io_args=()
    say "command $COMMAND, run folder $RUN, $GPUS GPU(s)"
    if [ "$COMMAND" = predict ]; then predict_job; return; fi
    recipe=$(resolve_recipe) || return 2
    if [ -n "$DATA_ID" ]; then
        say "data: the dataset $DATA_ID (datasets.load_dataset here)"
        io_args=(--data "$DATA_ID")
    elif [ -n "$DATA" ]; then
        say "data: $(public_url "$DATA")"
        data_dir=$(prepare_data "$DATA") || return 2
        say "data folder: $data_dir"
        io_args=(--data "$data_dir")
    fi
    io_args+=(--out "$RUN")
    # cv takes the same RECIPE [OVERRIDE ...] --data DIR --out DIR as run, plus --folds K.
    if [ "$COMMAND" = cv ] && [ -n "$FOLDS" ]; then io_args+=(--folds "$FOLDS"); fi
    if [ "$GPUS" -gt 1 ]; then
        # gen-emotion trains under accelerate (one process per GPU) and generates in one process of its own
        # (tensor parallel over all the GPUs, which it adds to the recipe); the two never share a process.
        io_args+=(--gpus "$GPUS" ${ACCELERATE_CONFIG:+--accelerate-config "$ACCELERATE_CONFIG"})
    fi
    run_cmd "$BIN" "$COMMAND" "$recipe" "${overrides[@]}" "${io_args[@]}"
}

# predict: the file (downloaded as needed) with the run's model, as the run decided (its recipe, thresholds,
# tensor parallel size); the predictions land in the run folder.
predict_job() {
    local input
    say "data: $(public_url "$DATA")"
    input=$(prepare_data "$DATA" "$INPUT_NAME") || return 2
    run_cmd "$BIN" predict "$RUN" "${OVERRIDES[@]}" --input "$input" --out "$RUN/predictions/$STEM.csv"
}

# DONE or FAILED: exit status, when, and the log's last lines; written atomically.
write_marker() {
    local status=$1 name=DONE
    [ "$status" -eq 0 ] || name=FAILED
    rm -f "$MARK_DIR/${MARK_PREFIX}DONE" "$MARK_DIR/${MARK_PREFIX}FAILED"
    {
        echo "exit_status=$status"
        echo "command=$COMMAND"
        echo "run=$RUN"
        echo "gpus=$GPUS"
        echo "finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "seconds=$SECONDS"
        echo "--- last $TAIL_LINES lines of ${LOG##*/} ---"
        tail -n "$TAIL_LINES" "$LOG" 2>/dev/null
    } > "$MARK_DIR/.$MARK_PREFIX$name.tmp" && mv "$MARK_DIR/.$MARK_PREFIX$name.tmp" "$MARK_DIR/$MARK_PREFIX$name"
    say "$name: exit status $status ($MARK_DIR/$MARK_PREFIX$name)"
}

# Pod only: let `gen-emotion fetch` in over SSH with the account's keys RunPod passes as PUBLIC_KEY. The host
# keys live on the volume, so the key `fetch` trusted on first use is the same after the pod stops and starts.
start_sshd() {
    if [ -z "${PUBLIC_KEY:-}" ] || ! command -v sshd > /dev/null; then
        say "no PUBLIC_KEY or no sshd: SSH is off"; return 0
    fi
    mkdir -p ~/.ssh /run/sshd && chmod 700 ~/.ssh
    grep -qxF "$PUBLIC_KEY" ~/.ssh/authorized_keys 2>/dev/null || printf '%s\n' "$PUBLIC_KEY" >> ~/.ssh/authorized_keys
    chmod 600 ~/.ssh/authorized_keys
    local keys=$WS/.ssh-host-keys
    if ls "$keys"/ssh_host_*_key > /dev/null 2>&1; then
        cp -p "$keys"/ssh_host_* /etc/ssh/
    else
        ssh-keygen -A > /dev/null && mkdir -p "$keys" && chmod 700 "$keys" && cp -p /etc/ssh/ssh_host_* "$keys"/
    fi
    "$(command -v sshd)" && say "sshd started"
}

main() {
    if [ "$DRY_RUN" = 1 ]; then run_job; return; fi
    SECRETS=$("$GEN_EMOTION_PYTHON" -m gen_emotion.core.redaction names) \
        || die "cannot list the secret variables ($GEN_EMOTION_PYTHON -m gen_emotion.core.redaction names)"
    [ -z "$LOCAL_DIR" ] && start_sshd
    local marker=$MARK_DIR/${MARK_PREFIX}DONE
    [ -f "$marker" ] || marker=$MARK_DIR/${MARK_PREFIX}FAILED
    if [ "$FORCE" != 1 ] && [ -f "$marker" ]; then
        say "$marker exists: not running again (--force or GEN_EMOTION_FORCE=1 to rerun)"
        [ -z "$LOCAL_DIR" ] && keep_alive
        return "$(sed -n 's/^exit_status=//p' "$marker" | head -n 1 | grep -E '^[0-9]+$' || echo 1)"
    fi
    if [ "$COMMAND" = predict ] && [ ! -d "$RUN" ]; then
        die "predict: no run folder $RUN: give the finished run's name (--run-name NAME)"
    fi
    mkdir -p "$MARK_DIR" || die "cannot create $MARK_DIR"
    run_job 2>&1 | redact | tee -a "$LOG"
    local status=${PIPESTATUS[0]}
    write_marker "$status"
    [ -z "$LOCAL_DIR" ] && keep_alive
    return "$status"
}

main
