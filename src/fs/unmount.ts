import { execFile } from 'node:child_process'

/** Unmounts lazily with fusermount, falling back to umount -l (root; what a machine without fusermount has). */
export function detach(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fusermount', ['-uz', dir], (e1) => {
      if (!e1) return resolve()
      execFile('umount', ['-l', dir], (e2) => (e2 ? reject(new Error(`cannot unmount ${dir}: ${e2.message.trim()}`)) : resolve()))
    })
  })
}
