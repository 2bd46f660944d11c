// ESLint with typescript-eslint's type-checked rules over the whole tree. Formatting is
// Prettier's job (`prettier --check` in `npm run lint`), layers are dependency-cruiser's.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '**/*.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    rules: {
      // Fastify handlers, codec methods and activity factories are async by contract even when
      // a body needs no await; the rule would only add noise around them.
      '@typescript-eslint/require-await': 'off',
      // `_`-prefixed names are deliberately unused (destructuring a field away, a required parameter).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
    },
  },
  {
    // Tests and benches read JSON bodies and third-party documents whose shape is what they
    // assert: the no-unsafe family would only make them cast. Production code keeps it.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // Issue 11: no unchecked casts in workflows and activities. A value of unknown shape is
    // checked (a zod parse, a type guard) rather than asserted; `as const` stays allowed.
    files: ['workflows/**/*.ts', 'activities/**/*.ts'],
    rules: { '@typescript-eslint/consistent-type-assertions': ['error', { assertionStyle: 'never' }] },
  },
  {
    // Issue 11: no `!` non-null assertions in workflows and activities either: a value that may be
    // missing is checked, and its absence fails with an error that says what was missing.
    files: ['workflows/**/*.ts', 'activities/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'error' },
  },
  { files: ['**/*.js', '**/*.cjs'], ...tseslint.configs.disableTypeChecked },
);
