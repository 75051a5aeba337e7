/**
 * IOMMU_TEST_CMD's uAPI half: the op picks the member of the command's
 * union (src/uapi/structs.ts) the payload is decoded with; the ops
 * themselves are src/iommufd/selftest.ts. An op iommufs does not serve is
 * EOPNOTSUPP, as the kernel answers an unknown one.
 */
import { TestDmabuf, dmabufAt, dmabufGet, dmabufPath, dmabufs } from '../iommufd/dmabuf'
import * as T from '../iommufd/selftest'
import { ErrnoError } from '../util/errno'
import { fdIsServedHere } from '../util/own-mounts'
import { Call, NEWFD_RETVAL, descriptorTarget, needsDescriptors } from './ioctls'
import { StructLayout, StructValue, decode, encode } from './layout'
import { TEST_CMD_UNION } from './structs'

const UNION_BYTES = 48

function payloadOf(req: StructValue, layout: StructLayout): StructValue {
  const raw = Buffer.alloc(UNION_BYTES)
  ;(req.payload as bigint[]).forEach((w, i) => raw.writeBigUInt64LE(w, i * 8))
  return decode(layout, raw)
}

/** The union's words after writing `out` over the member's fields. */
function payloadWith(req: StructValue, layout: StructLayout, out: StructValue): bigint[] {
  const raw = Buffer.alloc(UNION_BYTES)
  ;(req.payload as bigint[]).forEach((w, i) => raw.writeBigUInt64LE(w, i * 8))
  encode(layout, { ...payloadOf(req, layout), ...out }).copy(raw)
  return Array.from({ length: UNION_BYTES / 8 }, (_, i) => raw.readBigUInt64LE(i * 8))
}

const u = (s: StructValue, f: string): number => Number(s[f] as bigint)

/**
 * An access op's `id` is the caller's descriptor: the frame's FD entries map
 * it to the access; a real ioctl's is read from /proc (the file the
 * supervisor installed); a text request gives the handle.
 */
function access(call: Call, id: number): number {
  const mapped = call.fds?.get(id)
  if (mapped !== undefined) return mapped
  if (!call.noDescriptors || !call.owner) return id
  const a = fdIsServedHere(call.owner, id) ? T.accessAt(call.ctx!, descriptorTarget(call.owner, id, 'id')) : undefined
  if (!a) throw new ErrnoError('EBADFD', `id=${id}: not an access descriptor`)
  return a.id
}
const b = (s: StructValue, f: string): bigint => s[f] as bigint

/**
 * The DMA-BUF behind descriptor `fd` of the caller (a text request names the
 * buffer's ID instead): EBADF when no such descriptor is open, EINVAL when it
 * is no DMA-BUF of this mount, as dma_buf_get answers.
 */
export function callerDmabuf(call: Call, fd: number): TestDmabuf {
  const world = call.ctx!.world
  if (!call.owner) {
    const d = dmabufs(world).get(fd)
    if (!d) throw new ErrnoError('EBADF', `dmabuf_fd=${fd}: no such DMA-BUF`)
    return d
  }
  const target = descriptorTarget(call.owner, fd, 'dmabuf_fd')
  const d = dmabufAt(world, target)
  if (!d) throw new ErrnoError('EINVAL', `dmabuf_fd=${fd}: ${target} is not a DMA-BUF`)
  return d
}

/**
 * What the kernel's mock takes back when copying the command to the caller
 * fails (selftest.c's error paths after the reply): a mock device it made is
 * destroyed (detached, unbound), an access destroyed, pinned pages unpinned.
 * Every other op keeps its effect.
 */
export function undoTestCmd(call: Call, out: StructValue): void {
  const ctx = call.ctx!
  const M = TEST_CMD_UNION
  switch (u(call.req, 'op')) {
    case T.TestOp.MOCK_DOMAIN:
    case T.TestOp.MOCK_DOMAIN_FLAGS: {
      const stdev = ctx.objects.find(u(payloadOf(out, M.mock_domain), 'out_stdev_id'))
      if (stdev) ctx.destroyObject(stdev)
      return
    }
    case T.TestOp.CREATE_ACCESS:
      T.closeAccess(ctx, u(payloadOf(out, M.create_access), 'out_access_fd'))
      return
    case T.TestOp.ACCESS_PAGES:
      T.destroyAccessPages(ctx, access(call, u(call.req, 'id')), u(payloadOf(out, M.access_pages), 'out_access_pages_id'))
      return
  }
}

export function testCmd(call: Call): StructValue {
  const ctx = call.ctx
  if (!ctx) throw new ErrnoError('EINVAL', 'IOMMU_TEST_CMD acts on an iommufd context')
  const req = call.req
  const op = u(req, 'op')
  const id = u(req, 'id')
  const M = TEST_CMD_UNION
  switch (op) {
    case T.TestOp.ADD_RESERVED: {
      const p = payloadOf(req, M.add_reserved)
      T.addReserved(ctx, id, b(p, 'start'), b(p, 'length'))
      return {}
    }
    case T.TestOp.MOCK_DOMAIN:
    case T.TestOp.MOCK_DOMAIN_FLAGS: {
      const flags = op === T.TestOp.MOCK_DOMAIN_FLAGS ? u(payloadOf(req, M.mock_domain_flags), 'dev_flags') : 0
      const r = T.mockDomain(ctx, id, flags)
      return { payload: payloadWith(req, M.mock_domain, { out_stdev_id: BigInt(r.stdevId), out_hwpt_id: BigInt(r.hwptId), out_idev_id: BigInt(r.idevId) }) }
    }
    case T.TestOp.MOCK_DOMAIN_REPLACE: {
      const pt = T.mockDomainReplace(ctx, id, u(payloadOf(req, M.mock_domain_replace), 'pt_id'))
      return { payload: payloadWith(req, M.mock_domain_replace, { pt_id: BigInt(pt) }) }
    }
    case T.TestOp.MD_CHECK_MAP: {
      const p = payloadOf(req, M.check_map)
      T.checkMap(ctx, id, b(p, 'iova'), b(p, 'length'), b(p, 'uptr'), call.owner)
      return {}
    }
    case T.TestOp.MD_CHECK_REFS: {
      const p = payloadOf(req, M.check_refs)
      T.checkRefs(ctx, b(p, 'length'), b(p, 'uptr'), u(p, 'refs'), call.owner)
      return {}
    }
    case T.TestOp.SET_TEMP_MEMORY_LIMIT:
      T.setTestMemoryLimit(u(payloadOf(req, M.memory_limit), 'limit'))
      return {}
    case T.TestOp.MD_CHECK_IOTLB: {
      const p = payloadOf(req, M.check_iotlb)
      T.checkIotlb(ctx, id, u(p, 'id'), u(p, 'iotlb'))
      return {}
    }
    case T.TestOp.DEV_CHECK_CACHE: {
      const p = payloadOf(req, M.check_dev_cache)
      T.checkDevCache(ctx, id, u(p, 'id'), u(p, 'cache'))
      return {}
    }
    case T.TestOp.CREATE_ACCESS: {
      needsDescriptors(call, 'CREATE_ACCESS')
      const handle = T.createAccess(ctx, id, u(payloadOf(req, M.create_access), 'flags'))
      // the kernel installs a descriptor: the shim keeps a placeholder (a frame of its own, OWN); a writer
      // acting for another process (exec --namespace's supervisor) gets the access's file to install
      const a = call.owner ? undefined : T.accessOf(ctx, handle)
      call.newFds?.push({ handle, offset: 16 + M.create_access.field('out_access_fd').offset, path: a && T.accessPath(ctx, a), object: a })
      return { payload: payloadWith(req, M.create_access, { out_access_fd: BigInt(handle) }) }
    }
    case T.TestOp.ACCESS_REPLACE_IOAS:
      T.accessReplaceIoas(ctx, access(call, id), u(payloadOf(req, M.access_replace_ioas), 'ioas_id'))
      return {}
    case T.TestOp.ACCESS_PAGES: {
      const p = payloadOf(req, M.access_pages)
      const item = T.accessPages(ctx, { handle: access(call, id), flags: u(p, 'flags'), iova: b(p, 'iova'), length: b(p, 'length'), uptr: b(p, 'uptr'), owner: call.owner })
      return { payload: payloadWith(req, M.access_pages, { out_access_pages_id: BigInt(item) }) }
    }
    case T.TestOp.DESTROY_ACCESS_PAGES:
      T.destroyAccessPages(ctx, access(call, id), u(payloadOf(req, M.destroy_access_pages), 'access_pages_id'))
      return {}
    case T.TestOp.ACCESS_RW: {
      const p = payloadOf(req, M.access_rw)
      T.accessRw(ctx, { handle: access(call, id), iova: b(p, 'iova'), length: b(p, 'length'), uptr: b(p, 'uptr'), flags: u(p, 'flags') }, {
        need: (ranges) => call.mem.need(ranges.map((r) => ({ ...r, field: 'access_rw' }))),
        read: (addr, len) => call.mem.read(addr, BigInt(len), 'access_rw'),
        write: (addr, data) => call.mem.write(addr, data, 'access_rw'),
      })
      return {}
    }
    case T.TestOp.TRIGGER_IOPF: {
      const p = payloadOf(req, M.trigger_iopf)
      T.triggerIopf(ctx, { devId: u(p, 'dev_id'), pasid: u(p, 'pasid'), grpid: u(p, 'grpid'), perm: u(p, 'perm'), addr: b(p, 'addr') })
      return {}
    }
    case T.TestOp.TRIGGER_VEVENT:
      T.triggerVevent(ctx, u(payloadOf(req, M.trigger_vevent), 'dev_id'))
      return {}
    case T.TestOp.DIRTY: {
      const p = payloadOf(req, M.dirty)
      const uptr = b(p, 'uptr')
      const n = T.markDirty(ctx, {
        hwptId: id,
        iova: b(p, 'iova'),
        length: b(p, 'length'),
        pageSize: b(p, 'page_size'),
        uptr,
        bitmap: (bytes) => call.mem.read(uptr, BigInt(bytes), 'dirty.uptr'),
      })
      return { payload: payloadWith(req, M.dirty, { out_nr_dirty: BigInt(n) }) }
    }
    case T.TestOp.PASID_ATTACH:
    case T.TestOp.PASID_REPLACE: {
      const p = payloadOf(req, M.pasid_attach)
      const f = op === T.TestOp.PASID_ATTACH ? T.testPasidAttach : T.testPasidReplace
      const pt = f(ctx, id, u(p, 'pasid'), u(p, 'pt_id'))
      return { payload: payloadWith(req, M.pasid_attach, { pt_id: BigInt(pt) }) }
    }
    case T.TestOp.PASID_DETACH:
      T.testPasidDetach(ctx, id, u(payloadOf(req, M.pasid_detach), 'pasid'))
      return {}
    case T.TestOp.PASID_CHECK_HWPT: {
      const p = payloadOf(req, M.pasid_check)
      T.testPasidCheck(ctx, id, u(p, 'pasid'), u(p, 'hwpt_id'))
      return {}
    }
    case T.TestOp.DMABUF_GET: {
      // its descriptor is the return value, which a number cannot fake: no buffer is made
      needsDescriptors(call, 'DMABUF_GET')
      const d = dmabufGet(ctx.world, u(payloadOf(req, M.dmabuf_get), 'length'))
      // the kernel returns the new descriptor; the shim opens the buffer's file for it
      call.newFds?.push({ handle: d.id, offset: NEWFD_RETVAL, path: dmabufPath(d) })
      return {}
    }
    case T.TestOp.DMABUF_REVOKE: {
      const p = payloadOf(req, M.dmabuf_revoke)
      callerDmabuf(call, Number(p.dmabuf_fd as bigint)).revoked = u(p, 'revoked') !== 0
      return {}
    }
    default:
      throw new ErrnoError('EOPNOTSUPP', `op=${op}: not a test op iommufs serves`)
  }
}
