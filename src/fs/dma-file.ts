import { deviceDma, heldDmasOf } from '../iommufd/dma'
import { World } from '../iommufd/world'
import { formatDmaReply, formatResult, parseDmaRequest, parseResultQuery } from '../uapi/dma-text'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
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
    open: (): OpenFile => {
      let pending = ''
      let reply = Buffer.alloc(0)
      let replyBase = 0
      return {
        read: (pos, len) => {
          const off = pos >= replyBase ? pos - replyBase : pos
          return reply.subarray(Math.min(off, reply.length), Math.min(off + len, reply.length))
        },
        write: (pos, data) => {
          pending += data.toString('latin1')
          if (pending.length > MAX_LINE) {
            pending = ''
            const e = new ErrnoError(LIMITS.dmaLength.errno, `request line over ${MAX_LINE} bytes (data of at most ${LIMITS.dmaLength.max} bytes in hex)`)
            reply = Buffer.from(`err ${e.errno} ${e.message}\n`)
            replyBase = pos
            throw e
          }
          for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
            const line = pending.slice(0, nl).trim()
            pending = pending.slice(nl + 1)
            if (!line || line.startsWith('#')) continue
            replyBase = pos + data.length
            try {
              const query = parseResultQuery(line)
              if (query !== undefined) reply = Buffer.from(formatResult(query, heldDmasOf(world).get(query)))
              else {
                const req = parseDmaRequest(line)
                reply = Buffer.from(formatDmaReply(req, deviceDma(world, bdf, req)))
              }
              world.trace.emit(`dma ${bdf}`, `${line.length > 120 ? `${line.slice(0, 120)}...` : line} -> ${reply.toString().split('\n')[0]}`)
            } catch (e) {
              if (!(e instanceof ErrnoError)) {
                world.trace.emit('bug', `dma ${bdf}: ${e instanceof Error ? e.stack?.split('\n').slice(0, 3).join(' | ') : String(e)}`)
                reply = Buffer.from('err EIO internal error in iommufs (the trace has the details)\n')
                throw new ErrnoError('EIO', 'internal error')
              }
              reply = Buffer.from(`err ${e.errno} ${e.message}\n`)
              // a failed write does not move the file position: the reply is read from here
              replyBase = pos
              world.trace.emit(`dma ${bdf}`, `${line.slice(0, 120)} -> err ${e.errno} ${e.message}`)
              pending = ''
              throw e
            }
          }
          return data.length
        },
        release: () => {},
      }
    },
  }
}
