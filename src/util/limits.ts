import type { ErrnoName } from './errno'

/**
 * Every bound iommufs puts on what one user can make it hold or do, in one
 * place. Each is checked before any allocation or loop it guards, so no
 * single request can hold the server (and every other user) for more than a
 * few milliseconds. docs/limits.md is the same table for users; a unit test
 * keeps the two equal.
 */
export interface Limit {
  /** The largest accepted value. */
  readonly max: number
  /** What a request beyond it gets; undefined where the oldest entry is dropped instead. */
  readonly errno?: ErrnoName
  /** What is counted, in the words of docs/limits.md. */
  readonly what: string
}

const MiB = 1 << 20

/** Bytes of a binary frame's header (docs/frames.md); the frame codec takes it from here, since the struct limit is the frame limit less it. */
export const FRAME_HEADER = 32

/** Keeps the errno's literal type, so a limit with one is known to have one. */
function limit<E extends ErrnoName | undefined>(max: number, errno: E, what: string): Limit & { readonly errno: E } {
  return { max, errno, what }
}

export const LIMITS = {
  /** dev/iommu opens alive at once in one server. */
  contexts: limit(1024, 'ENFILE', 'iommufd contexts open at once (opens of dev/iommu)'),
  /** Live and tombstoned IDs in one context's object table. */
  objects: limit(65536, 'ENOSPC', 'objects (IDs) in one context'),
  /** Areas in one IOAS. */
  mappings: limit(262144, 'ENOMEM', 'mappings in one IOAS'),
  /** Ranges in one IOAS_ALLOW_IOVAS (each costs IOAS_IOVA_RANGES and every IOVA allocation a little). */
  allowedIovas: limit(1024, 'ENOMEM', 'ranges in one IOAS_ALLOW_IOVAS (num_iovas)'),
  /** Entries one HWPT_INVALIDATE may carry (the kernel's own cap, 2^19, is above it). */
  invalidateEntries: limit(4096, 'EINVAL', 'entries in one HWPT_INVALIDATE (entry_num)'),
  /** Entries of a ring (HWPT_INVALIDATE_RING) or a vCMDQ: one doorbell consumes at most this many. */
  ringEntries: limit(4096, 'EINVAL', 'entries of an invalidation ring or a vCMDQ (2^q_index_bits, 2^log2size)'),
  /** Bytes of one user buffer a struct's pointer names. */
  userBuffer: limit(16 * MiB, 'ENOMEM', 'bytes of one user buffer (a pointer field\'s data)'),
  /** Bytes of one binary frame, header included. */
  frame: limit(17 * MiB, 'EMSGSIZE', 'bytes of one binary frame (total_len)'),
  /** A struct's size/argsz: at most what a frame could carry; beyond it the tail cannot be read. */
  structSize: limit(17 * MiB - FRAME_HEADER, 'EFAULT', 'a struct\'s size (argsz): the bytes a frame can carry'),
  /** Bytes of unfinished frames all users' descriptors hold between writes: each may be a frame of 17 MiB, and a user may hold one per context and process. */
  pendingBytes: limit(128 * MiB, 'ENOMEM', 'bytes of unfinished frames (and lines) held for all descriptors at once, between writes'),
  /** Bytes of one text request line. */
  line: limit(4096, 'EMSGSIZE', 'bytes of one text request line'),
  /** Requests one write may carry (lines, blank and comment ones included, and frames): all are answered before any other user's request is. */
  requestsPerWrite: limit(64, 'E2BIG', 'requests in one write to dev/iommu, a VFIO node, dev/kvm or a DMA port (lines, blank ones included, and frames)'),
  /** Bytes of one write to an attribute or register file. */
  attributeWrite: limit(4096, 'E2BIG', 'bytes of one write to an attribute file'),
  /** Bytes one DMA request may move. */
  dmaLength: limit(1 * MiB, 'E2BIG', 'bytes of one DMA request'),
  /** Events one vEVENTQ holds, whatever its depth; beyond, an event is lost (LOST_EVENTS), as when the kernel cannot allocate one. */
  veventqEvents: limit(65536, undefined, 'events one vEVENTQ holds whatever its veventq_depth (more are lost: LOST_EVENTS)'),
  /** VMs alive at once (dev/kvm's CREATE_VM); closed VMs an IOMMU domain still imports do not count. */
  kvmVms: limit(64, 'ENOSPC', 'VMs at once (dev/kvm CREATE_VM)'),
  /** Memslots of one VM. */
  kvmMemslots: limit(512, 'ENOSPC', 'memslots of one VM'),
  /** Bytes one dev/kvm request covers (a memslot's size, a ZAP/PROTECT/PREFAULT/UNMAP range): each touches every 4K leaf of it. */
  kvmRange: limit(4 * MiB, 'E2BIG', 'bytes of one VM memslot, or of the range of one dev/kvm request (size)'),
  /** Page request groups one fault queue holds, queued or awaiting a response (the hardware holds as many stalled accesses). */
  faultGroups: limit(4096, undefined, 'page request groups one fault queue holds (queued or awaiting a response; a new one past it is answered INVALID at once)'),
  /** Finished DMA requests kept for a `result` query after they were held (stall, page request). */
  dmaResults: limit(256, undefined, 'finished held DMA requests kept for `result dma=N` (the oldest is dropped)'),
  /** trace_pipe opens at once: every trace line wakes each reader, so the work of one request grows with them. */
  tracePipeReaders: limit(64, 'ENFILE', 'opens of trace_pipe at once'),
  /** Lines the trace ring keeps; the oldest is dropped for a new one. */
  traceLines: limit(4096, undefined, 'lines kept by the trace (the oldest is dropped)'),
  /** Characters of one trace line; a longer one is cut. */
  traceLineLength: limit(1024, undefined, 'characters of one trace line (cut, marked with ...)'),
} as const satisfies Record<string, Limit>

export type LimitName = keyof typeof LIMITS
