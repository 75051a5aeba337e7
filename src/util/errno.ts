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
 * A refusal with an errno and a message that names the field at fault.
 * Every layer throws this for bad input; anything else reaching a boundary is a bug.
 */
export class ErrnoError extends Error {
  constructor(readonly errno: ErrnoName, message: string) {
    // an expected refusal, not a bug: no stack trace (capturing one cost more than the request)
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message)
    Error.stackTraceLimit = limit
    this.name = 'ErrnoError'
  }
  get code(): number {
    return ERRNO[this.errno]
  }
}
