#!/usr/bin/env node
// The CLI is compiled TypeScript: `npm install` builds dist/ (the "prepare" script).
let cli;
try {
  cli = await import('../dist/src/cli/main.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  process.stderr.write('tessera: dist/ is missing; run `npm run build` first\n');
  process.exit(1);
}
process.exitCode = await cli.runCli(process.argv.slice(2), process.env, process);
