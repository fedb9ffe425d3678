/**
 * vitest global setup: `npm run build` once, so end-to-end tests always run the current code, and
 * nothing a source file no longer produces is left in dist/ to be run by mistake.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function build(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}
