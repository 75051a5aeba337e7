import { deviceDma, heldDmasOf } from '../iommufd/dma'
import { World } from '../iommufd/world'
import { formatDmaReply, formatResult, parseDmaRequest, parseResultQuery } from '../uapi/dma-text'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { linePortFile } from './line-port'
import { FileNode, OpenFile, SYSFS_SIZE } from './nodes'

/** Longest request line: the largest write's data in hex (two characters a byte), plus the rest of the line. */
const MAX_LINE = 2 * LIMITS.dmaLength.max + 256

/**
 * A device's DMA port: write a request line, read the reply on the same
 * descriptor (each open has its own). A request that cannot be made fails
 * the write with its errno; the reply then reads "err ERRNO message".
 */
export function dmaPort(world: World, bdf: string): FileNode {
  return {
    kind: 'file',
    mode: 0o600,
    size: () => SYSFS_SIZE,
    open: (): OpenFile => ({
      ...linePortFile({
        trace: world.trace,
        tag: `dma ${bdf}`,
        tooLong: (pending) =>
          pending.length > MAX_LINE ? new ErrnoError(LIMITS.dmaLength.errno, `request line over ${MAX_LINE} bytes (data of at most ${LIMITS.dmaLength.max} bytes in hex)`) : undefined,
        answer: (line) => {
          const query = parseResultQuery(line)
          if (query !== undefined) return formatResult(query, heldDmasOf(world).get(query))
          const req = parseDmaRequest(line)
          return formatDmaReply(req, deviceDma(world, bdf, req))
        },
        shown: (line) => (line.length > 120 ? `${line.slice(0, 120)}...` : line),
        tracePid: false,
      }),
      release: () => {},
    }),
  }
}
