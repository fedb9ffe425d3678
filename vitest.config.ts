import { defineConfig } from 'vitest/config';

// Every test runs on SQLite; with TEST_DATABASE_URL set (as .ci/run does) every test runs again on PostgreSQL.
const dialects = process.env.TEST_DATABASE_URL ? ['sqlite', 'postgres'] : ['sqlite'];
// Said once, though vitest reads this file more than once.
if (dialects.length === 1 && !process.env.TESSERA_DIALECT_NOTICE) {
  process.env.TESSERA_DIALECT_NOTICE = 'shown';
  process.stderr.write('TEST_DATABASE_URL is not set: the PostgreSQL run and test/scale/ are skipped (README "Development").\n');
}

export default defineConfig({
  test: {
    globalSetup: ['test/support/build.ts'],
    // argon2id runs for real in the tests; two cores are shared by all workers.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: dialects.map((dialect) => ({
      extends: true,
      test: {
        name: dialect,
        include: ['test/**/*.test.ts'],
        // Several instances need a database they can share: PostgreSQL.
        exclude: dialect === 'sqlite' ? ['test/scale/**'] : [],
        env: { TESSERA_TEST_DIALECT: dialect },
      },
    })),
  },
});
