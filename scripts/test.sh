#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this and nothing else).
# Installs what the tests need when it is missing (Debian packages; run as root), then runs
# formatting and lint checks, every Rust test (unit, data-driven corpus, scenarios, CLI), and
# the reference flows through `ivr check` and `ivr test --coverage`.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkg() { # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing $2"
        if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "warning: $1 ($2) is missing and cannot be installed here; tests that need it are skipped" >&2
    fi
}
need_pkg dot graphviz
# Audio fixtures of runtime/media/tests/audio.rs: OGG/Vorbis and FLAC with sox, MP3 with lame.
need_pkg sox sox
need_pkg lame lame
# Synthetic prompt audio: `ivr prompts generate` and `ivr init` (tests/init.rs).
need_pkg espeak-ng espeak-ng
# SIP callers of tests/serve.rs (`ivr serve` end to end): SIPp with the scenarios of tests/sipp/.
need_pkg sipp sip-tester
need_pkg promtool prometheus         # tests/outcomes.rs: `promtool check metrics` of /metrics
# The self-signed certificates of tests/tls.rs (SIP over TLS, HTTPS).
need_pkg openssl openssl
# A real softphone, driven headless by tests/serve.rs.
need_pkg baresip baresip
# The SIP proxy in front of a cluster of nodes (tests/cluster.rs, scripts/cluster.sh).
need_pkg kamailio kamailio
# The phone page in a real browser (tests/browser.rs): headless Chromium driven by
# playwright-core (npm, installed into tests/browser/node_modules when missing; not committed).
need_pkg chromium chromium
need_pkg node nodejs
need_pkg npm npm
if command -v npm >/dev/null 2>&1 && [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "== installing playwright-core (tests/browser)"
    (cd tests/browser && npm install --no-save --no-audit --no-fund playwright-core >/dev/null) \
        || echo "warning: playwright-core could not be installed; the browser test is skipped" >&2
fi
# PostgreSQL for the data-layer tests: a throwaway server on 127.0.0.1 (installed when missing),
# its URL in IVR_TEST_POSTGRES_URL, stopped when this script exits.
source scripts/postgres.sh
start_postgres

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build --release (the binary tests/security.rs attacks)"
cargo build --release --bin ivr
export IVR_RELEASE_BIN="$PWD/target/release/ivr"
echo "== cargo test"
cargo test --workspace --no-fail-fast
echo "== ivr check (reference flows and examples)"
cargo run -q -- check
cargo run -q -- --config examples/ivr.toml check
echo "== ivr fmt --check (reference flows and examples are formatted)"
cargo run -q -- fmt --check
cargo run -q -- fmt --check examples
echo "== ivr test (reference scenarios)"
cargo run -q -- test --coverage
