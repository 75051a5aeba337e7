/**
 * The text form a recording gives a binary request (formatRequest) is the
 * inverse of parseText: the same struct bytes and the same buffer contents.
 */
import { strict as assert } from 'node:assert'
import { Machine } from '../../src/hw/machine'
import { IoctlRequest } from '../../src/uapi/dispatch'
import { ioctlByName } from '../../src/uapi/ioctls'
import { encode, StructValue } from '../../src/uapi/layout'
import { parseRecording, shellQuote } from '../../src/uapi/record'
import { formatRequest, parseText } from '../../src/uapi/text'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'

const machine: Machine = loadTopology(DEFAULT_TOPOLOGY)
const resolver = { byPci: (bdf: string) => machine.device(bdf), byDevId: () => undefined }

/** A binary request as a program would send it: the struct (maybe shorter or longer) and its buffers. */
function request(name: string, fields: StructValue, buffers: [bigint, Buffer | 'fault'][] = [], size?: number, tail?: Buffer): IoctlRequest {
  const L = ioctlByName(name)!.layout
  const full = encode(L, { [L.fields[0].name]: BigInt(size ?? L.size), ...fields })
  const struct = Buffer.alloc(size ?? L.size)
  full.copy(struct, 0, 0, Math.min(struct.length, full.length))
  if (tail) tail.copy(struct, L.size)
  return { cmd: ioctlByName(name)!.cmd, struct, buffers: new Map(buffers) }
}

/** The struct with its pointer fields zeroed (text requests choose their own addresses). */
function withoutPointers(name: string, struct: Buffer): Buffer {
  const L = ioctlByName(name)!.layout
  const b = Buffer.from(struct)
  for (const f of L.fields) if (f.pointer && f.offset + 8 <= b.length) b.writeBigUInt64LE(0n, f.offset)
  return b
}

describe('recordings: the text form of a binary request', () => {
  const range = Buffer.alloc(16)
  range.writeBigUInt64LE(0x1000n, 0)
  range.writeBigUInt64LE(0xffffn, 8)
  const cases: [string, IoctlRequest, string][] = [
    ['IOAS_ALLOC', request('IOAS_ALLOC', {}), 'IOAS_ALLOC'],
    ['a larger struct with a nonzero tail', request('IOAS_ALLOC', {}, [], 20, Buffer.from([1, 0, 0, 0, 0, 0, 0, 2])), 'IOAS_ALLOC size=20 tail=0x200000000000001'],
    ['a short struct', request('IOAS_ALLOC', {}, [], 8), 'IOAS_ALLOC size=8'],
    ['an input buffer', request('IOAS_ALLOW_IOVAS', { ioas_id: 2n, num_iovas: 1n, allowed_iovas: 0x5000n }, [[0x5000n, range]]), 'IOAS_ALLOW_IOVAS ioas_id=2 num_iovas=1 allowed_iovas=0x1000,0xffff'],
    ['a pointer the caller cannot read', request('IOAS_ALLOW_IOVAS', { ioas_id: 2n, num_iovas: 1n, allowed_iovas: 0x10n }, [[0x10n, 'fault']]), 'IOAS_ALLOW_IOVAS ioas_id=2 num_iovas=1 allowed_iovas=@0x10'],
    ['an output buffer and its count', request('IOAS_IOVA_RANGES', { ioas_id: 2n, num_iovas: 0n, allowed_iovas: 0x6000n }), 'IOAS_IOVA_RANGES ioas_id=2 num_iovas=0'],
    ['a NULL output buffer', request('GET_HW_INFO', { dev_id: 1n, data_len: 40n }), 'GET_HW_INFO dev_id=1 data_len=40 data=@0x0'],
    ['flags and an array of words', request('HWPT_ALLOC', { dev_id: 1n, pt_id: 4n, data_type: 1n, data_len: 16n, data_uptr: 0x7000n }, [[0x7000n, Buffer.from('0b1000400000000000000000000000000', 'hex')]]), 'HWPT_ALLOC dev_id=1 pt_id=4 data_type=1 data_len=16 data=0x4000100b,0x0'],
  ]
  for (const [what, req, text] of cases) {
    it(`${what}: ${text}`, () => {
      const ioctl = ioctlByName(text.split(' ')[0])!
      assert.equal(formatRequest(ioctl, req), text)
      const back = parseText(text, resolver)
      assert.deepEqual(withoutPointers(ioctl.short, back.struct), withoutPointers(ioctl.short, req.struct))
      const data = (r: IoctlRequest): (Buffer | 'fault')[] => [...r.buffers.values()].filter((b) => b !== 'fault')
      assert.deepEqual(data(back), data(req))
    })
  }

  it("VFIO_DEVICE_BIND_IOMMUFD's descriptor becomes the context ID it is open on", () => {
    const req = request('VFIO_DEVICE_BIND_IOMMUFD', { iommufd: 7n })
    assert.equal(formatRequest(ioctlByName('DEVICE_BIND')!, req, new Map([[7, 1]])), 'DEVICE_BIND iommufd=1')
    assert.equal(formatRequest(ioctlByName('DEVICE_BIND')!, { ...req, device: machine.devices[2] }, new Map([[7, 1]])), 'DEVICE_BIND pci=0000:01:00.0 iommufd=1')
  })

  it('a quoted step parses back to the same request and reply', () => {
    const text = `#!/usr/bin/env bash\n# ---- steps ----\nopen 3 dev/iommu\nsend 3 ${shellQuote("IOAS_ALLOC it's")} ${shellQuote("err EINVAL it's: x")}\nclose 3\n`
    assert.deepEqual(parseRecording('r', text).steps[1], { line: 4, op: 'send', fd: 3, request: "IOAS_ALLOC it's", reply: "err EINVAL it's: x" })
  })
})
