import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'mount/**', 'examples/**', 'test/reporter.js'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // `import X = require('m')` is how TypeScript imports an `export =` module (fuse-native)
      '@typescript-eslint/no-require-imports': ['error', { allowAsImport: true }],
    },
  },
)
