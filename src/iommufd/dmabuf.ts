import { Abort, SizedBacking } from '../memory/backing'
import { CPU_PAGE } from '../memory/pages'
import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'
import type { World } from './world'

/**
 * The kernel selftest's DMA-BUF exporter (IOMMU_TEST_OP_DMABUF_GET and
 * DMABUF_REVOKE): zeroed kernel memory behind a descriptor, which
 * IOAS_MAP_FILE maps, and which can be revoked (a new map is then ENODEV;
 * DMA into an old one aborts). Its descriptor is its file in the debug
 * tree; the last close of that file lets the buffer go (mappings keep it).
 */
export class TestDmabuf implements SizedBacking {
  readonly label: string
  readonly data: Buffer
  /** Set by DMABUF_REVOKE: a new map is ENODEV, DMA into an old one aborts. */
  revoked = false
  /** Open descriptors of its file; the first open is the one DMABUF_GET handed out. */
  opens = 0

  constructor(readonly id: number, length: number) {
    this.label = `dmabuf ${id}`
    this.data = Buffer.alloc(length)
  }

  size(): bigint {
    return BigInt(this.data.length)
  }

  read(offset: bigint, len: number): Buffer | Abort {
    const at = Number(offset)
    if (this.revoked) return { abort: `${this.label}: revoked` }
    if (at + len > this.data.length) return { abort: `${this.label}: beyond its ${this.data.length} bytes` }
    return Buffer.from(this.data.subarray(at, at + len))
  }

  write(offset: bigint, data: Buffer): Abort | undefined {
    const at = Number(offset)
    if (this.revoked) return { abort: `${this.label}: revoked` }
    if (at + data.length > this.data.length) return { abort: `${this.label}: beyond its ${this.data.length} bytes` }
    data.copy(this.data, at)
    return undefined
  }

  hold(): void {}

  release(): void {}

  pageSizeAt(): bigint {
    return CPU_PAGE
  }
}

const PAGE = Number(CPU_PAGE)
/** The exporter's largest buffer (512 pages), as the kernel's. */
const MAX_PAGES = 512
/** Live buffers a world keeps before refusing more (each up to 2 MiB). */
const MAX_LIVE = 64

const byWorld = new WeakMap<World, { next: number; live: Map<number, TestDmabuf> }>()

/** The world's live DMA-BUFs, by ID. */
export function dmabufs(world: World): Map<number, TestDmabuf> {
  let r = byWorld.get(world)
  if (!r) byWorld.set(world, (r = { next: 1, live: new Map() }))
  return r.live
}

/** DMABUF_GET: `length` rounded up to pages; 0 or more than 512 pages is EINVAL. */
export function dmabufGet(world: World, length: number): TestDmabuf {
  const len = Math.ceil(length / PAGE) * PAGE
  if (len === 0 || len > PAGE * MAX_PAGES) throw new ErrnoError('EINVAL', `length=${length}: 1 to ${PAGE * MAX_PAGES} bytes`)
  const live = dmabufs(world)
  if (live.size >= MAX_LIVE) throw new ErrnoError('ENOMEM', `${MAX_LIVE} DMA-BUFs are live, the most iommufs keeps; close some`)
  // the buffer and its pages are allocations the kernel's can fail
  fallible('object allocation')
  const r = byWorld.get(world)!
  const d = new TestDmabuf(r.next++, len)
  live.set(d.id, d)
  return d
}

/** Where a DMA-BUF's descriptor is, relative to the mount root. */
export function dmabufPath(d: TestDmabuf): string {
  return `sys/kernel/debug/iommufd/dmabuf/${d.id}`
}

/** The DMA-BUF a path (a descriptor's target) names, if it is one of this world's. */
export function dmabufAt(world: World, target: string): TestDmabuf | undefined {
  const m = /\/sys\/kernel\/debug\/iommufd\/dmabuf\/(\d+)$/.exec(target)
  return m ? dmabufs(world).get(Number(m[1])) : undefined
}

/** The last close of a DMA-BUF's file: the world forgets it (mappings of it keep its memory). */
export function dmabufClosed(world: World, d: TestDmabuf): void {
  if (--d.opens <= 0) dmabufs(world).delete(d.id)
}
