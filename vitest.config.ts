import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/build.ts'],
    // argon2id runs for real in the tests; two cores are shared by all workers.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
