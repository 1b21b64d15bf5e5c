// Starts `ivr lsp` for .flow files (the language server does the work: diagnostics,
// navigation, completion, hover, outline, formatting).
'use strict';

const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const settings = vscode.workspace.getConfiguration('ivr');
  const command = settings.get('path') || 'ivr';
  const config = settings.get('config');
  const args = config ? ['--config', config, 'lsp'] : ['lsp'];
  const serverOptions = { run: { command, args }, debug: { command, args } };
  const clientOptions = {
    documentSelector: [{ scheme: 'file', language: 'ivr-flow' }],
    synchronize: {
      // The configuration and the prompt catalogs are read by the server; it re-reads them
      // when they change on disk.
      fileEvents: [
        vscode.workspace.createFileSystemWatcher('**/ivr.toml'),
        vscode.workspace.createFileSystemWatcher('**/prompts.toml'),
        vscode.workspace.createFileSystemWatcher('**/*.flow'),
      ],
    },
  };
  client = new LanguageClient('ivr', 'ivr lsp', serverOptions, clientOptions);
  client.start();
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
