// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', '.bench/', 'node_modules/', '.venv/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // The state store is async: a call whose promise is dropped is a write that may not happen, or
    // an error nobody sees.
    files: ['src/**/*.ts', 'test/**/*.ts', 'scripts/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    // The AWS SDK is loaded through src/collect/aws-sdk.ts (require(), not import: see there why); from
    // anywhere else in src, only its types.
    files: ['src/**/*.ts'],
    ignores: ['src/collect/aws-sdk.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@aws-sdk/*', '@smithy/core', '@smithy/core/*'],
              allowTypeImports: true,
              message: 'Load the AWS SDK through src/collect/aws-sdk.ts; import only its types here.',
            },
          ],
        },
      ],
    },
  },
);
