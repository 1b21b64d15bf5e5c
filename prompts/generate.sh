#!/usr/bin/env bash
# Renders the texts of every prompt catalog below a prompts folder to audio files with
# espeak-ng, as placeholders until studio recordings replace them.
#
#   prompts/generate.sh [--force] [PROMPTS_DIR]
#
# PROMPTS_DIR defaults to the folder this script is in. For each PROMPTS_DIR/<language>/prompts.toml
# it writes, beside the catalog, one 8 kHz mono 16-bit WAV file per entry: the entry's `file`,
# or <id>.wav. The built-in spoken-value fragments, PROMPTS_DIR/_builtin/<language>/prompts.toml
# (generated from runtime/engine/src/say), are rendered the same way as 8 kHz mu-law WAV files, which
# the ivr binary embeds. Files that already exist are kept (they may be studio recordings) unless
# --force is given. Entries whose `file` is not a .wav are never rendered: those are studio
# recordings in another format.
#
# Needs python3 (3.11 or later, for tomllib), espeak-ng and sox; espeak-ng and sox are
# installed with apt-get when missing.
set -euo pipefail

force=0
dir=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $arg" >&2; exit 2 ;;
        *) dir="$arg" ;;
    esac
done
if [ -z "$dir" ]; then
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
if [ ! -d "$dir" ]; then
    echo "no such folder: $dir" >&2
    exit 2
fi

# Tools.
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} ..."
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 is required" >&2; exit 1; }

# The espeak-ng voice for a language folder.
voice_for() {
    case "$1" in
        zh-CN|zh) echo "cmn" ;;
        en-US)    echo "en-us" ;;
        en-GB)    echo "en-gb" ;;
        *)        echo "${1,,}" ;;
    esac
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

rendered=0
kept=0
skipped=0
shopt -s nullglob
for catalog in "$dir"/*/prompts.toml "$dir"/_builtin/*/prompts.toml; do
    langdir="$(dirname "$catalog")"
    lang="$(basename "$langdir")"
    voice="$(voice_for "$lang")"
    # Built-in fragments are embedded in the binary: mu-law keeps them at 8 KB a second.
    encoding=(-b 16 -e signed-integer)
    case "$langdir" in */_builtin/*) encoding=(-b 8 -e u-law) ;; esac
    # One line per entry: id <TAB> file <TAB> text (text with newlines flattened).
    python3 - "$catalog" > "$tmp/entries" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    catalog = tomllib.load(f)
for pid, entry in catalog.items():
    if not isinstance(entry, dict) or "text" not in entry:
        sys.exit(f"{sys.argv[1]}: entry {pid!r} has no text")
    file = entry.get("file", f"{pid}.wav")
    text = " ".join(str(entry["text"]).split())
    print(f"{pid}\t{file}\t{text}")
PY
    while IFS=$'\t' read -r id file text; do
        out="$langdir/$file"
        case "$file" in
            *.wav|*.WAV) ;;
            *) echo "  $lang/$file: not a .wav, left to the studio"; skipped=$((skipped + 1)); continue ;;
        esac
        if [ -e "$out" ] && [ "$force" -eq 0 ]; then
            kept=$((kept + 1))
            continue
        fi
        mkdir -p "$(dirname "$out")"
        printf '%s\n' "$text" > "$tmp/text.txt"
        espeak-ng -v "$voice" -s 210 -w "$tmp/raw.wav" -f "$tmp/text.txt"
        # Trim leading and trailing silence, normalise to -3 dBFS, then 8 kHz mono 16-bit.
        sox -q "$tmp/raw.wav" "${encoding[@]}" "$out" \
            silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
            gain -n -3 rate 8000 channels 1
        echo "  $lang/$file"
        rendered=$((rendered + 1))
    done < "$tmp/entries"
done

echo "rendered $rendered, kept $kept existing, skipped $skipped (in $dir)"
