/** Linux errno numbers by name: the only table of them in the project. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EAGAIN: 11,
  E2BIG: 7,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENXIO: 6,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  ERANGE: 34,
  ELOOP: 40,
  ENOSYS: 38,
  ENODATA: 61,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EPROTO: 71,
  EBADE: 52,
  EBADFD: 77,
  ETIMEDOUT: 110,
  ESTALE: 116,
} as const

export type ErrnoName = keyof typeof ERRNO

const NAMES = new Map<number, ErrnoName>(
  (Object.entries(ERRNO) as [ErrnoName, number][]).map(([name, n]) => [n, name]),
)

export function errnoName(n: number): ErrnoName | undefined {
  return NAMES.get(n)
}

export function isErrnoName(s: string): s is ErrnoName {
  return Object.prototype.hasOwnProperty.call(ERRNO, s)
}

/**
 * An Error thrown as an outcome (a refusal, a fault, a request for more
 * memory), not as a bug: it captures no stack trace, which would cost more
 * than the request that threw it.
 */
export class OutcomeError extends Error {
  constructor(message: string) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message)
    Error.stackTraceLimit = limit
  }
}

/**
 * A refusal with an errno and a message that names the field at fault.
 * Every layer throws this for bad input; anything else reaching a boundary is a bug.
 */
export class ErrnoError extends OutcomeError {
  constructor(readonly errno: ErrnoName, message: string) {
    super(message)
    this.name = 'ErrnoError'
  }
  get code(): number {
    return ERRNO[this.errno]
  }
}
