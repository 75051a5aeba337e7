/**
 * IOMMUFS_DMA (docs/extensions.md): one DMA by a bound device, as a text
 * line and as the struct a program sends, through the same dispatcher.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench } from '../helpers/iommufd'
import { ioctlByName } from '../../src/uapi/ioctls'

describe('IOMMUFS_DMA', () => {
  let dir: string
  let t: IommuBench
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dma-ioctl-'))
    const f = path.join(dir, 'ram')
    fs.writeFileSync(f, Buffer.concat([Buffer.from('hello ioctl!'), Buffer.alloc(4096 - 12)]))
    t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${f} start=0 length=0x1000 iova=0x100000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('is 0x3bc2, 96 bytes, in the iommufs extension range', () => {
    const io = ioctlByName('IOMMUFS_DMA')!
    assert.equal(io.cmd, 0x3bc2)
    assert.equal(io.layout.size, 96)
  })

  it('a read returns the data, the output address and the permissions; a write lands in the file', () => {
    const r = t.ok('DMA dev_id=1 iova=0x100000 length=8')
    assert.equal(r.out_status, '0')
    assert.equal(r.out_addr, '0x8000000000')
    assert.equal(r.out_perms, '0x3f', 'privileged and unprivileged read, write and execute (iommufd maps without IOMMU_NOEXEC)')
    assert.equal(r.out_findings, '0')
    assert.equal(Buffer.from(BigInt(r.out_data).toString(16).padStart(16, '0'), 'hex').reverse().toString(), 'hello io')
    assert.equal(t.ok('DMA dev_id=1 iova=0x100008 length=8 flags=WRITE in_data=0x2121212121212121').out_status, '0')
    assert.equal(fs.readFileSync(path.join(dir, 'ram')).subarray(0, 16).toString(), 'hello io!!!!!!!!')
  })

  it('a translation fault is a result: out_status FAULT and the event record, not an error', () => {
    const r = t.ok('DMA dev_id=1 iova=0x200000 length=8')
    assert.equal(r.out_status, '1')
    assert.equal(r.out_event, `0x800000010,0x20800000000,0x200000,0x0`)
  })

  it('unknown flags EOPNOTSUPP, an unknown device ENOENT, WRITE with TRANSLATE EINVAL; nothing changes', () => {
    t.err('DMA dev_id=1 iova=0x100000 length=8 flags=0x100', 'EOPNOTSUPP', /flags=0x100/)
    t.err('DMA dev_id=9 iova=0x100000 length=8', 'ENOENT', /dev_id=9/)
    t.err('DMA dev_id=1 iova=0x100000 length=8 flags=WRITE|TRANSLATE in_data=0x0', 'EINVAL', /WRITE and TRANSLATE/)
    t.err('DMA dev_id=1 iova=0x100000 length=0x100001', 'E2BIG', /length|len/)
  })
})
