import { Machine } from '../hw/machine'
import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { TraceLog } from '../util/trace'
import { Kvm } from '../kvm/kvm'
import { IommufdContext } from './context'
import { installHostHandlers } from './host-events'
import { Ioas, pinnedStretchesOf } from './ioas'
import { Charges, charges, describeCharges, npinned } from './pages'

/** Everything the contexts share: the machine, which context owns each device, the trace. */
export class World {
  readonly contexts = new Map<number, IommufdContext>()
  private readonly owners = new Map<PciDevice, IommufdContext>()
  private nextContext = 1

  /** KVM beside iommufd: VMs whose stage 2 an IOMMU domain may import (dev/kvm, an iommufs extension). */
  readonly kvm: Kvm

  constructor(readonly machine: Machine, readonly trace: TraceLog = new TraceLog()) {
    this.kvm = new Kvm(machine.memory, trace)
    installHostHandlers(this)
  }

  open(): IommufdContext {
    const { max, errno } = LIMITS.contexts
    if (this.contexts.size >= max) throw new ErrnoError(errno, `dev/iommu: ${max} contexts are open, the most iommufs serves at once`)
    const ctx = new IommufdContext(this.nextContext++, this)
    this.contexts.set(ctx.id, ctx)
    return ctx
  }

  close(ctx: IommufdContext): void {
    ctx.close()
    this.contexts.delete(ctx.id)
  }

  /** Every IOAS of every context: pins are counted across them all, as the kernel's counters are. */
  ioases(): Ioas[] {
    return [...this.contexts.values()].flatMap((c) => c.objects.objects().filter((o): o is Ioas => o instanceof Ioas))
  }

  /** What the model's pins charge, by process and by user, as the kernel's counters would hold it. */
  charges(): Charges {
    return charges(npinned(pinnedStretchesOf(this.ioases())))
  }

  /** The debug tree's `pinned`: the charges, one line each. */
  pinCharges(): string {
    return describeCharges(this.charges())
  }

  /** Where dev/iommu must reach for every context's mapped regions to be read through it (its pages are shared by all opens). */
  mappedFileEnd(): bigint {
    let end = 0n
    for (const c of this.contexts.values()) {
      const e = c.mmaps.fileEnd()
      if (e > end) end = e
    }
    return end
  }

  ownerOf(pci: PciDevice): IommufdContext | undefined {
    return this.owners.get(pci)
  }

  setOwner(pci: PciDevice, ctx: IommufdContext | undefined): void {
    if (ctx) this.owners.set(pci, ctx)
    else this.owners.delete(pci)
  }
}
