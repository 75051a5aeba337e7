import { existsSync } from 'node:fs'
import * as path from 'node:path'

/** The package root: the folder that holds package.json and sysfs-schema/. */
function findRoot(): string {
  let dir = __dirname
  while (!existsSync(path.join(dir, 'sysfs-schema'))) {
    const up = path.dirname(dir)
    if (up === dir) throw new Error(`sysfs-schema/ not found above ${__dirname}`)
    dir = up
  }
  return dir
}

export const PACKAGE_ROOT = findRoot()
export const SCHEMA_DIR = path.join(PACKAGE_ROOT, 'sysfs-schema')
export const DEFAULT_TOPOLOGY = path.join(SCHEMA_DIR, 'topologies', 'default.yaml')
