/** Bad command-line use (a wrong option, or a path argument that cannot be used): one line on stderr, exit status 2. */
export class UsageError extends Error {}
