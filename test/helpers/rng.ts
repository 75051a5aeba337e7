/** A fixed-seed xorshift32 generator for randomised tests: r(n) is in [0, n), and a failure is reproducible from its seed. */
export function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1
  return (n) => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x % n
  }
}
