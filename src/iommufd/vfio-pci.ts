/**
 * What vfio-pci tells a user about a function it owns (vfio_pci_core.c):
 * its info, regions and interrupts. The model's functions are PCIe functions
 * that can be reset, with a 4 KiB configuration space and no BARs, option ROM,
 * VGA, INTx pin, MSI or MSI-X capability (the topology describes none): the
 * answers are the ones vfio-pci gives for such a function.
 */
import { ErrnoError } from '../util/errno'

/** VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI. */
export const DEVICE_FLAGS = 0x3
/** VFIO_PCI_NUM_REGIONS: BAR0-5, ROM, config, VGA. */
export const NUM_REGIONS = 9
/** VFIO_PCI_NUM_IRQS: INTx, MSI, MSI-X, ERR, REQ. */
export const NUM_IRQS = 5

const REGION = { ROM: 6, CONFIG: 7, VGA: 8 } as const
const REGION_READ = 1
const REGION_WRITE = 2
/** VFIO_PCI_OFFSET_SHIFT: a region's offset in the device file is its index << 40. */
const OFFSET_SHIFT = 40n
const CONFIG_SIZE = 4096n

export interface RegionInfo {
  readonly flags: number
  readonly size: bigint
  readonly offset: bigint
}

/** VFIO_DEVICE_GET_REGION_INFO of region `index`. */
export function regionInfo(index: number): RegionInfo {
  if (index >= NUM_REGIONS) throw new ErrnoError('EINVAL', `index=${index}: the function has regions 0..${NUM_REGIONS - 1}`)
  if (index === REGION.VGA) throw new ErrnoError('EINVAL', `index=${index}: the function is not a VGA device`)
  const offset = BigInt(index) << OFFSET_SHIFT
  if (index === REGION.CONFIG) return { flags: REGION_READ | REGION_WRITE, size: CONFIG_SIZE, offset }
  // a BAR or ROM the function does not implement: size 0, no flags
  return { flags: 0, size: 0n, offset }
}

const IRQ = { INTX: 0, MSIX: 2 } as const
const IRQ_EVENTFD = 1
const IRQ_MASKABLE = 2
const IRQ_AUTOMASKED = 4
const IRQ_NORESIZE = 8

export interface IrqInfo {
  readonly flags: number
  readonly count: number
}

/** VFIO_DEVICE_GET_IRQ_INFO of interrupt type `index`: no INTx pin, MSI or MSI-X; ERR (a PCIe function) and REQ have one each. */
export function irqInfo(index: number): IrqInfo {
  if (index >= NUM_IRQS) throw new ErrnoError('EINVAL', `index=${index}: the function has interrupt types 0..${NUM_IRQS - 1}`)
  // MSI-X resizes only with dynamic allocation, which needs an MSI-X capability
  const flags = IRQ_EVENTFD | (index === IRQ.INTX ? IRQ_MASKABLE | IRQ_AUTOMASKED : IRQ_NORESIZE)
  return { flags, count: index > IRQ.MSIX ? 1 : 0 }
}
