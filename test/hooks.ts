/**
 * Mocha root hook: after the whole run, lazily unmounts every fuse.iommufs
 * mount a test of this run left behind (temp dirs named iommufs-test-<pid>-*), and removes
 * the directory when it is empty. Tests unmount their own mounts; this is the
 * net under them.
 */
import { promises as fsp } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { iommufsMountPoints, run, TEMP_PREFIX } from './helpers/cli'

async function sweepTestMounts(): Promise<void> {
  const root = tmpdir()
  const leftovers = (await iommufsMountPoints()).filter((m) => path.dirname(m) === root && path.basename(m).startsWith(TEMP_PREFIX))
  for (const dir of leftovers) {
    const r = await run('umount', ['-l', dir])
    process.stderr.write(`hooks: unmounted a mount left by a test: ${dir}${r.code === 0 ? '' : ` (failed: ${r.stderr.trim()})`}\n`)
    await fsp.rmdir(dir).catch(() => {})
  }
}

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await sweepTestMounts()
  },
}
