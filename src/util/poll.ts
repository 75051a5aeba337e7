/** poll() bits (asm-generic/poll.h), as files report their readiness. */
export const Poll = { IN: 0x1, OUT: 0x4, RDNORM: 0x40, WRNORM: 0x100 } as const
