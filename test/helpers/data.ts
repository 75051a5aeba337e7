/** In-process helpers for unit tests: temp data files and rendering a unit's attributes. */
import { Smmuv3 } from '../../src/hw/smmuv3/smmuv3'
import { Vtd } from '../../src/hw/vtd/vtd'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { RegisterFile } from '../../src/hw/registers'
import { IommuUnit } from '../../src/hw/unit'
import { renderAttribute, Schema } from '../../src/topology/attributes'
import { makeTempDir } from './cli'

/** A temp dir for data files, removed by `cleanup`. */
export async function tempDataDir(): Promise<{ dir: string; write(name: string, text: string): Promise<string>; cleanup(): Promise<void> }> {
  const dir = await makeTempDir()
  return {
    dir,
    async write(name, text) {
      const file = path.join(dir, name)
      await fsp.writeFile(file, text)
      return file
    },
    cleanup: () => fsp.rm(dir, { recursive: true, force: true }),
  }
}

/** `text` with `from` replaced by `to`; throws unless `from` occurs exactly once (so an edit never silently misses). */
export function edit(text: string, from: string, to: string): string {
  const at = text.indexOf(from)
  if (at < 0 || text.indexOf(from, at + 1) >= 0) throw new Error(`edit: ${JSON.stringify(from)} must occur exactly once`)
  return text.slice(0, at) + to + text.slice(at + from.length)
}

/** The same unit as a topology with other register words would build it. */
function rebuilt(unit: IommuUnit, regs: RegisterFile): IommuUnit {
  if (regs === unit.registers) return unit
  return unit instanceof Smmuv3 ? new Smmuv3(unit.base, regs) : new Vtd(Number(unit.name.replace('dmar', '')), unit.base, regs)
}

/**
 * Every attribute file of `unit` as the tree would show it, keyed "<directory>/<name>",
 * computed from `regs` (default: the unit's own registers). Absent attributes have no key.
 */
export function renderUnit(schema: Schema, unit: IommuUnit, regs: RegisterFile = unit.registers): Map<string, string> {
  const built = rebuilt(unit, regs)
  const owner = { registers: built.registers, property: (n: string) => built.property(n) }
  const out = new Map<string, string>()
  if (unit.kind === 'mock') return out
  for (const g of schema.groupsFor(unit.kind)) {
    for (const a of g.attributes) {
      const text = renderAttribute(a, owner)
      if (text !== undefined) out.set(`${g.directory}/${a.name}`, text)
    }
  }
  return out
}

/** The keys whose value differs between two renderings (appeared, disappeared or changed), sorted. */
export function changedKeys(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string[] {
  const keys = new Set([...before.keys(), ...after.keys()])
  return [...keys].filter((k) => before.get(k) !== after.get(k)).sort()
}
