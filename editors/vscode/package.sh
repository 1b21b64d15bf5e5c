#!/usr/bin/env bash
# Builds the VS Code extension package editors/vscode/ivr-flow.vsix: installs its one
# dependency (vscode-languageclient) from npm and packages it with @vscode/vsce.
# Needs node and npm (Debian: nodejs, npm) and the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --omit=dev
npx --yes @vscode/vsce package --skip-license --allow-missing-repository -o ivr-flow.vsix
echo "built $(pwd)/ivr-flow.vsix: install with  code --install-extension $(pwd)/ivr-flow.vsix"
