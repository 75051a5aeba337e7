/**
 * Changing the tree answers root as the filesystem each part stands for
 * (measured on Linux 6.18): sysfs and debugfs refuse mkdir, ln, ln -s, mv, rm
 * and rmdir (EPERM) and creating a file (EACCES), and allow touch of an
 * existing entry; chmod, chown and chgrp are kept in sysfs and refused in
 * debugfs (EPERM). dev/ (devtmpfs) keeps chmod, chown and chgrp and allows
 * touch, but its nodes are the model's and are not reshaped. Every part keeps
 * the times touch sets, a chmod or chown moves the change time, and reading
 * changes none. Real mounts of both backends, real coreutils.
 */
import { strict as assert } from 'node:assert'
import { sh, withMount } from '../helpers/mount'

const ATTR = 'sys/class/iommu/dmar0/intel-vtd/model'
const TRACE = 'sys/kernel/debug/iommufd/trace'
const EPERM = 'Operation not permitted'
const EACCES = 'Permission denied'

/** [command, exact stderr ('' = it succeeds)] */
const CASES: [string, string][] = [
  // sysfs
  ['mkdir sys/class/new', `mkdir: cannot create directory 'sys/class/new': ${EPERM}`],
  ['touch sys/class/new', `touch: cannot touch 'sys/class/new': ${EACCES}`],
  ['ln -s iommu sys/class/link', `ln: failed to create symbolic link 'sys/class/link': ${EPERM}`],
  [`ln ${ATTR} sys/class/hard`, `ln: failed to create hard link 'sys/class/hard' => '${ATTR}': ${EPERM}`],
  ['mv sys/class/iommu sys/class/iommu2', `mv: cannot move 'sys/class/iommu' to 'sys/class/iommu2': ${EPERM}`],
  [`rm ${ATTR}`, `rm: cannot remove '${ATTR}': ${EPERM}`],
  ['rmdir sys/class/iommu', `rmdir: failed to remove 'sys/class/iommu': ${EPERM}`],
  [`touch ${ATTR}`, ''],
  [`chmod 600 ${ATTR}`, ''],
  [`chown 1:2 ${ATTR}`, ''],
  [`chgrp 3 ${ATTR}`, ''],
  // debugfs
  ['mkdir sys/kernel/debug/iommufd/new', `mkdir: cannot create directory 'sys/kernel/debug/iommufd/new': ${EPERM}`],
  ['touch sys/kernel/debug/iommufd/new', `touch: cannot touch 'sys/kernel/debug/iommufd/new': ${EACCES}`],
  ['ln -s trace sys/kernel/debug/iommufd/link', `ln: failed to create symbolic link 'sys/kernel/debug/iommufd/link': ${EPERM}`],
  [`mv ${TRACE} sys/kernel/debug/iommufd/t2`, `mv: cannot move '${TRACE}' to 'sys/kernel/debug/iommufd/t2': ${EPERM}`],
  [`rm ${TRACE}`, `rm: cannot remove '${TRACE}': ${EPERM}`],
  ['rmdir sys/kernel/debug/iommufd/dma', `rmdir: failed to remove 'sys/kernel/debug/iommufd/dma': ${EPERM}`],
  [`touch ${TRACE}`, ''],
  [`chmod 600 ${TRACE}`, `chmod: changing permissions of '${TRACE}': ${EPERM}`],
  [`chown 1 ${TRACE}`, `chown: changing ownership of '${TRACE}': ${EPERM}`],
  [`chgrp 2 ${TRACE}`, `chgrp: changing group of '${TRACE}': ${EPERM}`],
  // devtmpfs: the model's nodes stay where they are
  ['rm dev/iommu', `rm: cannot remove 'dev/iommu': ${EPERM}`],
  ['mv dev/iommu dev/iommu2', `mv: cannot move 'dev/iommu' to 'dev/iommu2': ${EPERM}`],
  ['mkdir dev/new', `mkdir: cannot create directory 'dev/new': ${EPERM}`],
  ['touch dev/new', `touch: cannot touch 'dev/new': ${EACCES}`],
  ['ln -s iommu dev/link', `ln: failed to create symbolic link 'dev/link': ${EPERM}`],
  ['rmdir dev/vfio/devices', `rmdir: failed to remove 'dev/vfio/devices': ${EPERM}`],
  ['touch dev/iommu', ''],
  ['chmod 600 dev/iommu', ''],
  ['chown 4:5 dev/iommu', ''],
]

/**
 * Across parts of the tree. libfuse3 mounts sysfs apart, as a machine does:
 * rename(2) answers EXDEV, mv then copies, and creating the file in sysfs is
 * refused (as `mv /dev/iommu /sys/iommu` is). fuse-native serves one mount, so
 * the rename reaches the server, which refuses it.
 */
const ACROSS: Record<string, [string, string]> = {
  libfuse3: ['mv dev/iommu sys/iommu', `mv: cannot create regular file 'sys/iommu': ${EACCES}`],
  'fuse-native': ['mv dev/iommu sys/iommu', `mv: cannot move 'dev/iommu' to 'sys/iommu': ${EPERM}`],
}

/** What a refused change must leave as it was: every name, and the values and modes that were not chmod-ed. */
const STATE = `find sys/class sys/bus dev sys/kernel/debug/iommufd/dma | sort | md5sum; stat -c '%a %F %u:%g %n' ${TRACE} dev/vfio/devices sys/class/iommu; cat ${ATTR}`

for (const backend of ['libfuse3', 'fuse-native']) {
  describe(`changing the tree answers as sysfs, debugfs and devtmpfs do (${backend})`, function () {
    this.timeout(60000)
    const opts = { args: ['--backend', backend] }

    it('mkdir, touch, ln, ln -s, mv, rm, rmdir and chmod: each exact error, and nothing else changes', async () => {
      await withMount(async (m) => {
        const before = await sh(`cd ${m.dir} && ${STATE}`)
        assert.equal(before.code, 0, before.stderr)
        for (const [cmd, want] of [...CASES, ACROSS[backend]]) {
          const r = await sh(`cd ${m.dir} && ${cmd}`)
          assert.equal(r.stderr, want ? `${want}\n` : '', cmd)
          assert.equal(r.code, want ? 1 : 0, cmd)
        }
        const after = await sh(`cd ${m.dir} && ${STATE}`)
        assert.equal(after.stdout, before.stdout)
        assert.equal(after.stdout.split('\n')[4], '1')
      }, opts)
    })

    it('chmod is kept in sysfs and dev/ (stat shows it, the file still reads and opens) and refused in debugfs', async () => {
      await withMount(async (m) => {
        const r = await sh(
          `set -e; cd ${m.dir}
stat -c %a ${ATTR} dev/iommu ${TRACE}
chmod 600 ${ATTR}; chmod 640 dev/iommu; chmod 600 ${TRACE} 2>/dev/null || echo refused
stat -c %a ${ATTR} dev/iommu ${TRACE}
cat ${ATTR}; exec 3<>dev/iommu; echo opened`,
        )
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, ['444', '666', '444', 'refused', '600', '640', '444', '1', 'opened', ''].join('\n'))
      }, opts)
    })

    it('chown and chgrp are kept in sysfs and dev/ (stat shows them) and refused in debugfs', async () => {
      await withMount(async (m) => {
        const r = await sh(
          `cd ${m.dir}
chown 1:2 ${ATTR}; chgrp 7 ${ATTR}; chown 3 dev/iommu; chown 4:5 ${TRACE} 2>/dev/null || echo refused
stat -c '%u:%g' ${ATTR} dev/iommu ${TRACE} sys/class/iommu
cat ${ATTR}`,
        )
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, ['refused', '1:7', '3:0', '0:0', '0:0', '1', ''].join('\n'))
      }, opts)
    })

    it('times: touch sets them (-a, -m, -d), chmod and chown move only the change time, a read changes none', async () => {
      await withMount(async (m) => {
        const st = (f: string): string => `stat -c '%X %Y' ${f}`
        const r = await sh(
          `set -e; cd ${m.dir}
for f in ${ATTR} dev/iommu ${TRACE} sys/class/iommu; do
  touch -d '2001-02-03 04:05:06 UTC' $f; ${st('$f')}
  touch -a -d '2002-01-01 00:00:00 UTC' $f; ${st('$f')}
done
c0=$(stat -c %Z ${ATTR}); t=$(date +%s)
[ "$c0" -ge $((t - 60)) ] && echo "ctime moved"
touch -m -d '2003-01-01 00:00:00 UTC' ${ATTR}; ${st(ATTR)}
cat ${ATTR} >/dev/null; ${st(ATTR)}
chmod 640 ${ATTR}; chown 9 ${ATTR}; ${st(ATTR)}
touch ${ATTR}; n=$(stat -c %Y ${ATTR}); [ "$n" -ge "$t" ] && echo "touch is now"`,
        )
        assert.equal(r.code, 0, r.stderr)
        // 981173106 = 2001-02-03 04:05:06, 1009843200 = 2002-01-01, 1041379200 = 2003-01-01 (UTC); libfuse2
        // (fuse-native) passes a touch on only when it sets both times, so -a and -m alone change nothing there
        const both = backend === 'fuse-native'
        const want = [
          ...Array.from({ length: 4 }, () => ['981173106 981173106', both ? '981173106 981173106' : '1009843200 981173106']).flat(),
          'ctime moved',
          ...Array.from({ length: 3 }, () => (both ? '981173106 981173106' : '1009843200 1041379200')),
          'touch is now',
          '',
        ]
        assert.equal(r.stdout, want.join('\n'))
      }, opts)
    })
  })
}
