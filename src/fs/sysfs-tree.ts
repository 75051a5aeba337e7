import { Machine } from '../hw/machine'
import { AttributeOwner, Schema, Subject, deviceOwner, groupOwner, renderAttribute, unitOwner } from '../topology/attributes'
import { AttributeFile, StaticDir, symlink } from './nodes'

/** Where each kind of subject lives in the tree; the one place these paths are spelled. */
export const SUBJECT_DIRS: Record<Subject, string> = {
  'arm-smmu-v3': '/sys/class/iommu/<iommu>',
  'intel-vtd': '/sys/class/iommu/<iommu>',
  'pci-device': '/sys/bus/pci/devices/<bdf>',
  'iommu-group': '/sys/kernel/iommu_groups/<group>',
}

function subjectPath(subject: Subject, name: string): string {
  return SUBJECT_DIRS[subject].replace(/<[^>]+>/, name)
}

/** The directory at an absolute path, made as needed. */
export function dirAt(root: StaticDir, p: string): StaticDir {
  return p
    .split('/')
    .filter(Boolean)
    .reduce((d, name) => d.dir(name), root)
}

/** Puts a subject's attribute groups into its directory; absent attributes get no file. */
function addAttributes(root: StaticDir, schema: Schema, subject: Subject, name: string, owner: AttributeOwner): void {
  const base = subjectPath(subject, name)
  for (const g of schema.groupsFor(subject)) {
    const dir = dirAt(root, g.directory === '.' ? base : `${base}/${g.directory}`)
    for (const a of g.attributes) {
      if (renderAttribute(a, owner) === undefined) continue
      // registers and constants are fixed by the topology; properties (domains_used...) follow the model
      const constant = a.value.kind !== 'property'
      const store = a.mode & 0o200 && owner.store ? owner.store.bind(owner, a.name) : undefined
      if (a.mode & 0o200 && !store) throw new Error(`${subject} ${name}: ${a.name} is writable but nothing takes its writes`)
      dir.add(a.name, new AttributeFile(() => `${renderAttribute(a, owner)}\n`, store, a.mode, constant))
    }
  }
}

/** The sysfs part of the tree: IOMMU classes, PCI devices, IOMMU groups and their links. */
export function buildSysfsTree(machine: Machine, schema: Schema, root = new StaticDir()): StaticDir {
  for (const unit of machine.units) {
    // the selftest's mock IOMMU has no feature files (the kernel registers none for it here)
    if (unit.kind === 'mock') continue
    const unitDir = subjectPath(unit.kind, unit.name)
    dirAt(root, unitDir)
    addAttributes(root, schema, unit.kind, unit.name, unitOwner(unit))
    const devices = dirAt(root, `${unitDir}/devices`)
    for (const d of unit.devices) devices.add(d.bdf, symlink(subjectPath('pci-device', d.bdf)))
  }
  for (const d of machine.devices) {
    const devDir = dirAt(root, subjectPath('pci-device', d.bdf))
    addAttributes(root, schema, 'pci-device', d.bdf, deviceOwner(d))
    if (d.unit.kind !== 'mock') devDir.add('iommu', symlink(subjectPath(d.unit.kind, d.unit.name)))
    devDir.add('iommu_group', symlink(subjectPath('iommu-group', String(d.group.id))))
    // the VFIO cdev's class device, as vfio registers it under its parent: how a VMM finds /dev/vfio/devices/vfioN for a BDF
    if (d.vfioIndex >= 0) {
      const cdev = `${subjectPath('pci-device', d.bdf)}/vfio-dev/vfio${d.vfioIndex}`
      dirAt(root, cdev).add('device', symlink(subjectPath('pci-device', d.bdf)))
      dirAt(root, '/sys/class/vfio-dev').add(`vfio${d.vfioIndex}`, symlink(cdev))
    }
  }
  for (const g of machine.groups) {
    const groupDir = subjectPath('iommu-group', String(g.id))
    const devices = dirAt(root, `${groupDir}/devices`)
    for (const d of g.devices) devices.add(d.bdf, symlink(subjectPath('pci-device', d.bdf)))
    addAttributes(root, schema, 'iommu-group', String(g.id), groupOwner(g))
  }
  return root
}
