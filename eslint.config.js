import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layers, lowest first: lib (shared domain code) ← services, activities ← workflows, workers,
 * cli ← testkit (rigs shared by tests and benchmarks) ← bench, tests. A folder may import only from its own layer and below; the rules below name
 * what each folder must not import. Type-only imports of workflow definitions (signals, queries,
 * result types) are allowed to the CLI; activities reach the CLI only through Temporal or lib/.
 */
const layer = (name, folders) => ({
  group: folders.flatMap((f) => [`../${f}/*`, `../${f}/**`, `../../${f}/*`, `../../${f}/**`, `../../../${f}/**`]),
  message: `${name} must not import from ${folders.join(', ')}: move what both need into lib/ (see docs/ARCHITECTURE.md, "Layers").`,
});

const noSideEffectModules = {
  group: ['node:*', 'fs', 'path', 'crypto', 'http', 'https', 'child_process', 'pg', 'kafkajs', 'dockerode', 'nodemailer', 'chromadb', 'express'],
  message: 'Workflow code must be deterministic: do side effects in activities.',
};

export default tseslint.config(
  { ignores: ['node_modules/**', '.marquee/**', 'dist/**', 'stack/kafka/target/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', fetch: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly' },
      // Type-aware rules: a promise nobody awaits is an error nobody sees.
      parserOptions: { projectService: { allowDefaultProject: ['*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-floating-promises': 'error',
    },
  },
  {
    files: ['lib/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [layer('lib/', ['services', 'activities', 'workflows', 'workers', 'cli', 'bench', 'tests', 'testkit', 'stack'])] }] },
  },
  {
    files: ['services/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [layer('services/', ['activities', 'workflows', 'workers', 'cli', 'bench', 'tests', 'testkit'])] }] },
  },
  {
    files: ['activities/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [layer('activities/', ['services', 'workflows', 'workers', 'cli', 'bench', 'tests', 'testkit'])] }] },
  },
  {
    files: ['cli/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [
      { ...layer('cli/', ['activities']), allowTypeImports: true, message: 'cli/ reaches activities only through Temporal (a workflow) or lib/; move shared code into lib/.' },
      layer('cli/', ['workers', 'bench', 'tests', 'testkit']),
    ] }] },
  },
  {
    files: ['bench/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [layer('bench/', ['tests'])] }] },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no clocks, randomness or I/O modules.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        noSideEffectModules,
        { group: ['../activities/*', '../activities/**'], allowTypeImports: true, message: 'Import activities into workflows by type only.' },
        layer('workflows/', ['services', 'workers', 'cli', 'bench', 'tests', 'testkit']),
      ] }],
    },
  },
  {
    // Plain JS files (this config, bin/) are not in the TypeScript project.
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
