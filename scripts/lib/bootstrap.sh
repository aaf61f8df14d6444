# Shared set-up steps for scripts/start and scripts/test. Sourced, not run.
# Every step is idempotent and quick when already done, so both commands can
# be typed on a fresh machine or the hundredth time alike.

SHIPYARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLAUDE_CODE_VERSION="2.1.197"   # the version claude-code-notes.md was measured on
# the versions agent-cli-notes.md was measured on
CODEX_VERSION="0.169.0"
GEMINI_CLI_VERSION="0.61.0"
OPENCODE_VERSION="1.18.33"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m[shipyard]\033[0m %s\n' "$*" >&2; }

# ensure_venv [extra]: a project-local virtualenv with Shipyard installed (editable).
ensure_venv() {
    local extra="${1:-}"
    local venv="$SHIPYARD_ROOT/.venv"
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        say "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11."
        exit 1
    fi
    if [ ! -x "$venv/bin/python" ]; then
        say "creating virtualenv in $venv"
        "$PYTHON" -m venv "$venv"
    fi
    local spec="$SHIPYARD_ROOT"
    [ -n "$extra" ] && spec="$SHIPYARD_ROOT[$extra]"
    local stamp="$venv/.installed-$(sha1sum "$SHIPYARD_ROOT/pyproject.toml" | cut -c1-12)${extra:+-$extra}"
    if [ ! -f "$stamp" ]; then
        say "installing Python packages${extra:+ (with $extra extras)}"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
        touch "$stamp"
    fi
}

# ensure_claude_cli: the pinned Claude Code CLI in .tools/ (never a global install).
ensure_claude_cli() {
    local bin="$SHIPYARD_ROOT/.tools/node_modules/.bin/claude"
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION"; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is needed to install Claude Code (install Node.js 18+), or set SHIPYARD_CLAUDE_BIN to an existing claude binary."
        return 1
    fi
    say "installing Claude Code $CLAUDE_CODE_VERSION into .tools/ (npm)"
    mkdir -p "$SHIPYARD_ROOT/.tools"
    npm install --silent --no-audit --no-fund --prefix "$SHIPYARD_ROOT/.tools" \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null
    "$bin" --version >/dev/null
}

# ensure_agent_clis: the pinned Codex CLI, Gemini CLI and opencode in .tools/, like Claude Code.
# Their native binaries come inside registry packages, so nothing is downloaded at install time.
# Install scripts are skipped (Gemini's node-pty/keytar builds are not needed headless); opencode's
# postinstall only links its platform binary, so it is run by hand, offline. Each binary must then
# answer --version without the network.
ensure_agent_clis() {
    local bin="$SHIPYARD_ROOT/.tools/node_modules/.bin"
    local mods="$SHIPYARD_ROOT/.tools/node_modules"
    # quick check (the binaries' own --version takes seconds each): installed package versions
    if [ -x "$bin/codex" ] && [ -x "$bin/gemini" ] && [ -x "$mods/opencode-ai/bin/opencode.exe" ] \
        && grep -q "\"version\": \"$CODEX_VERSION\"" "$mods/@openai/codex/package.json" 2>/dev/null \
        && grep -q "\"version\": \"$GEMINI_CLI_VERSION\"" "$mods/@google/gemini-cli/package.json" 2>/dev/null \
        && grep -q "\"version\": \"$OPENCODE_VERSION\"" "$mods/opencode-ai/package.json" 2>/dev/null \
        && [ "$(stat -c %s "$mods/opencode-ai/bin/opencode.exe")" -gt 1000000 ]; then  # linked, not the stub
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is needed to install Codex, Gemini CLI and opencode (install Node.js 20+)."
        return 1
    fi
    say "installing Codex $CODEX_VERSION, Gemini CLI $GEMINI_CLI_VERSION and opencode $OPENCODE_VERSION into .tools/ (npm)"
    mkdir -p "$SHIPYARD_ROOT/.tools"
    npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$SHIPYARD_ROOT/.tools" \
        "@openai/codex@$CODEX_VERSION" "@google/gemini-cli@$GEMINI_CLI_VERSION" \
        "opencode-ai@$OPENCODE_VERSION" >/dev/null
    (cd "$SHIPYARD_ROOT/.tools/node_modules/opencode-ai" && node postinstall.mjs >/dev/null)
    "$bin/codex" --version >/dev/null && "$bin/gemini" --version >/dev/null \
        && "$bin/opencode" --version >/dev/null
}

# ensure_debian_packages CMD:PACKAGE...: install (apt) the Debian packages whose command is missing.
ensure_debian_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            say "${missing[*]} missing and this user cannot install them: apt-get install ${missing[*]}"
            return 1
        fi
    fi
    say "installing ${missing[*]} (apt)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_sandbox_tools: bubblewrap (agent sandboxes; Codex's own sandbox uses it too), socat
# (the sandbox's bridge to the model API) and curl (the proxy test's client inside a sandbox).
ensure_sandbox_tools() {
    ensure_debian_packages bwrap:bubblewrap socat:socat curl:curl
}

# ensure_chromium: Debian's chromium for the browser tests (Playwright cannot download one here).
ensure_chromium() {
    ensure_debian_packages chromium:chromium
}
