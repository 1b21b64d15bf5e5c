// Checks the TextMate grammar with the engine VS Code uses (vscode-textmate on Oniguruma):
// `#` after `key`, after `terminator` and in `choices` is a key, elsewhere a comment; node
// names, targets, clause words, durations and strings get their scopes.
// Run: npm install && npm test   (devDependencies: vscode-textmate, vscode-oniguruma)
'use strict';

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
const onigLib = oniguruma.loadWASM(wasm).then(() => ({
  createOnigScanner: (p) => new oniguruma.OnigScanner(p),
  createOnigString: (s) => new oniguruma.OnigString(s),
}));
const file = path.join(__dirname, 'syntaxes', 'flow.tmLanguage.json');
const registry = new vsctm.Registry({
  onigLib,
  loadGrammar: async () => vsctm.parseRawGrammar(fs.readFileSync(file, 'utf8'), file),
});

const FLOW = [
  'menu main_menu {',
  '    prompt   main_menu                 # 主菜单',
  '    key # -> back  # a comment',
  '    key 1 -> common.bye if customer.vip == true',
  '    timeout  5s',
  '}',
  'input pin {',
  '    terminator #',
  '}',
  'survey s {',
  '    question q p choices 1 = "是", # = "否"',
  '}',
];

registry.loadGrammar('source.ivr-flow').then((grammar) => {
  const tokens = [];
  let stack = vsctm.INITIAL;
  for (const line of FLOW) {
    const r = grammar.tokenizeLine(line, stack);
    for (const t of r.tokens) {
      tokens.push([line.substring(t.startIndex, t.endIndex), t.scopes.join(' ')]);
    }
    stack = r.ruleStack;
  }
  const scopeOf = (text, nth = 0) => {
    const found = tokens.filter(([t]) => t === text);
    assert.ok(found[nth], `no token ${JSON.stringify(text)} (#${nth})`);
    return found[nth][1];
  };
  assert.match(scopeOf('menu'), /storage\.type\.node/);
  assert.match(scopeOf('main_menu'), /entity\.name\.function\.node/);
  assert.match(scopeOf('# 主菜单'), /comment\.line/);
  assert.match(scopeOf('#'), /constant\.character\.key/);
  assert.match(scopeOf('# a comment'), /comment\.line/);
  assert.match(scopeOf('#', 1), /constant\.character\.key/);
  assert.match(scopeOf('#', 2), /constant\.character\.key/);
  assert.match(scopeOf('back'), /support\.constant\.target/);
  assert.match(scopeOf('common.bye'), /entity\.name\.function\.target/);
  assert.match(scopeOf('5s'), /constant\.numeric\.duration/);
  assert.match(scopeOf('是'), /string\.quoted/);
  assert.match(scopeOf('timeout'), /keyword\.other\.clause/);
  console.log(`grammar: ${tokens.length} tokens, all scopes as expected`);
}).catch((e) => {
  console.error(e);
  process.exit(1);
});
