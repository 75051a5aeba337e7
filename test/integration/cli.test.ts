import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { depositField, lookupField, registerModel } from '../../src/hw/registers'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'
import { eventually, iommufs, isAlive, isMounted, lazyUnmount, makeTempDir, PACKAGE_ROOT, spawnServer } from '../helpers/cli'
import { edit, tempDataDir } from '../helpers/data'
import { sh, startMount, TestMount } from '../helpers/mount'

/** "path:value" lines of `grep -r . sys/class/iommu` run at the mount root, as a map. */
async function classTree(m: TestMount): Promise<Map<string, string>> {
  const r = await sh('grep -r . sys/class/iommu', { cwd: m.dir })
  assert.equal(r.code, 0, r.stderr)
  return new Map(
    r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const i = l.indexOf(':')
        return [l.slice(0, i), l.slice(i + 1)] as [string, string]
      }),
  )
}

function changed(a: Map<string, string>, b: Map<string, string>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).sort()
}

describe('iommufs command line', () => {
  describe('topology check', () => {
    it('prints the machine and exits 0', async () => {
      const r = await iommufs(['topology', 'check', DEFAULT_TOPOLOGY])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stderr, '')
      const lines = r.stdout.split('\n')
      assert.equal(lines[0], `${DEFAULT_TOPOLOGY}: 3 IOMMUs, 6 devices, 6 IOMMU groups`)
      assert.ok(lines.includes('dmar0  intel-vtd  base 0xfed90000  scalable-mode nesting pasid ats  2 devices'), r.stdout)
      assert.ok(lines.includes('  0000:01:01.0  StreamID 0x108  group 3  vfio3  [8086:1889]'), r.stdout)
    })

    it('prints the DataError of a bad file and exits 1', async () => {
      const data = await tempDataDir()
      try {
        const text = await fsp.readFile(DEFAULT_TOPOLOGY, 'utf8')
        const file = await data.write('bad.yaml', edit(text, 'stream_id: 0x108', 'stream_id: 0x100'))
        const r = await iommufs(['topology', 'check', file])
        assert.equal(r.code, 1)
        assert.equal(r.stdout, '')
        assert.equal(r.stderr, `iommufs: ${file}: iommus[1].devices[1].stream_id: expected a StreamID not already used by iommus[1].devices[0], got 0x100\n`)
      } finally {
        await data.cleanup()
      }
    })
  })

  it('topology check of a file that is not a topology says so in one short line', async () => {
    const r = await iommufs(['topology', 'check', '/etc/passwd'])
    assert.equal(r.code, 1)
    assert.equal(r.stderr.split('\n').length, 2, r.stderr)
    assert.match(r.stderr, /^iommufs: \/etc\/passwd: \(top level\): expected a mapping, got "[^\n]{1,60}\.\.\."\n$/)
  })

  it('--help names --version, and --version prints the package version', async () => {
    const help = await iommufs(['--help'])
    assert.match(help.stdout, /'iommufs --version' prints/)
    const v = await iommufs(['--version'])
    assert.equal(v.code, 0)
    assert.equal(v.stdout, `iommufs ${JSON.parse(await fsp.readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version}\n`)
  })

  it('mount with a bad topology does not mount; startMount rejects with the server stderr', async () => {
    const data = await tempDataDir()
    try {
      const file = await data.write('empty.yaml', 'iommus: []\n')
      await assert.rejects(startMount({ topology: file }), { message: `iommufs: ${file}: iommus: expected at least one IOMMU, got a list` })
    } finally {
      await data.cleanup()
    }
  })

  it('schema --abi documents every attribute, and what an absent one means', async () => {
    const r = await iommufs(['schema', '--abi'])
    assert.equal(r.code, 0, r.stderr)
    const at = r.stdout.indexOf('What:\t\t/sys/class/iommu/<iommu>/arm-smmu-v3/ssid_bits\n')
    assert.ok(at >= 0, 'ssid_bits entry')
    const entry = r.stdout.slice(at, r.stdout.indexOf('\nWhat:', at))
    assert.match(entry, /when absent: 0, SubstreamIDs \(PASIDs\) are not supported\.\n/)
    assert.ok(r.stdout.includes('What:\t\t/sys/class/iommu/<iommu>/intel-iommu/domains_supported\n'))
  })

  describe('usage errors: one line on stderr, exit 2', () => {
    const cases: [string[], string | RegExp][] = [
      [[], 'iommufs: missing command (see iommufs --help)\n'],
      [['frob'], 'iommufs: unknown command "frob" (see iommufs --help)\n'],
      [['mount'], 'iommufs: expected 1 argument, got 0 (see iommufs mount --help)\n'],
      [['mount', 'a', 'b'], 'iommufs: expected 1 argument, got 2 (see iommufs mount --help)\n'],
      [['mount', '/nonexistent', '--bogus'], /^iommufs: Unknown option '--bogus'[^\n]*\n$/],
      [['mount', '/nonexistent', '--topology'], /^iommufs: Option '--topology <value>' argument missing\n$/],
      [['unmount'], 'iommufs: expected 1 argument, got 0 (see iommufs unmount --help)\n'],
      [['topology', 'check'], 'iommufs: expected 2 arguments, got 1 (see iommufs topology --help)\n'],
      [['topology', 'verify', 'x.yaml'], 'iommufs: unknown topology command "verify" (expected: check or schema)\n'],
      [['schema'], 'iommufs: nothing to print (expected --abi)\n'],
      [['schema', '--abi', 'extra'], 'iommufs: expected 0 arguments, got 1 (see iommufs schema --help)\n'],
    ]
    for (const [args, expected] of cases) {
      it(`iommufs ${args.join(' ') || '(no arguments)'}`, async () => {
        const r = await iommufs(args)
        assert.equal(r.code, 2)
        assert.equal(r.stdout, '')
        if (typeof expected === 'string') assert.equal(r.stderr, expected)
        else assert.match(r.stderr, expected)
      })
    }
  })

  describe('--help on every command exits 0', () => {
    const cases: [string[], string][] = [
      [['--help'], 'usage: iommufs <command> [options]\n'],
      [['mount', '--help'], 'usage: iommufs mount DIR [--topology FILE] [--daemon] [--force] [--log FILE] [--backend NAME] [--sanitizer MODE] [--record FILE] [-v]\n'],
      [['mount', '/nonexistent', '-h'], 'usage: iommufs mount DIR [--topology FILE] [--daemon] [--force] [--log FILE] [--backend NAME] [--sanitizer MODE] [--record FILE] [-v]\n'],
      [['unmount', '--help'], 'usage: iommufs unmount DIR\n'],
      [['topology', '--help'], 'usage: iommufs topology check FILE\n'],
      [['topology', 'check', '--help'], 'usage: iommufs topology check FILE\n'],
      [['schema', '--help'], 'usage: iommufs schema --abi\n'],
    ]
    for (const [args, first] of cases) {
      it(`iommufs ${args.join(' ') || '(no arguments)'}`, async () => {
        const r = await iommufs(args)
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stderr, '')
        assert.equal(r.stdout.slice(0, r.stdout.indexOf('\n') + 1), first)
      })
    }
  })

  describe('mount point checks', () => {
    let dir: string
    beforeEach(async () => (dir = await makeTempDir()))
    afterEach(async () => {
      await lazyUnmount(dir)
      await fsp.rm(dir, { recursive: true, force: true })
    })

    it('refuses a non-empty directory with a clear message, exit 2', async () => {
      await fsp.writeFile(path.join(dir, 'notes.txt'), 'mine\n')
      const r = await iommufs(['mount', dir])
      assert.equal(r.code, 2)
      assert.equal(r.stderr, `iommufs: mount point ${dir} is not empty (use --force to mount over it)\n`)
      assert.equal(await isMounted(dir), false)
      assert.equal(await fsp.readFile(path.join(dir, 'notes.txt'), 'utf8'), 'mine\n')
    })

    it('mounts over content with --force, and the content is back after unmount', async () => {
      await fsp.writeFile(path.join(dir, 'notes.txt'), 'mine\n')
      const srv = await spawnServer(dir, ['--force'])
      try {
        const r = await sh(`ls ${dir} && cat ${dir}/sys/class/iommu/dmar0/intel-vtd/model`)
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, 'dev\nsys\n1\n')
      } finally {
        await srv.stop()
      }
      assert.equal(await isMounted(dir), false)
      assert.equal(await fsp.readFile(path.join(dir, 'notes.txt'), 'utf8'), 'mine\n')
    })

    it('a lone .gitkeep does not count as content', async () => {
      await fsp.writeFile(path.join(dir, '.gitkeep'), '')
      const srv = await spawnServer(dir)
      try {
        const r = await sh(`cat ${dir}/sys/class/iommu/smmu3.0x0000000009060000/arm-smmu-v3/model`)
        assert.equal(r.stdout, '2\n')
      } finally {
        await srv.stop()
      }
      assert.deepEqual(await fsp.readdir(dir), ['.gitkeep'])
    })

    it('a missing directory is named, exit 2 (also with --daemon)', async () => {
      const daemon = await iommufs(['mount', '--daemon', path.join(dir, 'nope')])
      assert.equal(daemon.code, 2)
      assert.equal(daemon.stderr, `iommufs: mount point ${path.join(dir, 'nope')} does not exist\n`)
      const r = await iommufs(['mount', path.join(dir, 'nope')])
      assert.equal(r.code, 2)
      assert.equal(r.stderr, `iommufs: mount point ${path.join(dir, 'nope')} does not exist\n`)
    })

    it('a directory already served is refused', async () => {
      const srv = await spawnServer(dir)
      try {
        const r = await iommufs(['mount', dir])
        assert.equal(r.code, 2)
        assert.equal(r.stderr, `iommufs: ${dir} is already an iommufs mount (iommufs unmount ${dir})\n`)
        assert.equal((await sh(`cat ${dir}/sys/class/iommu/dmar0/intel-vtd/model`)).stdout, '1\n', 'the first server still serves')
      } finally {
        await srv.stop()
      }
    })

    it('unmount of a directory that is not an iommufs mount exits 2', async () => {
      const r = await iommufs(['unmount', dir])
      assert.equal(r.code, 2)
      assert.equal(r.stderr, `iommufs: ${dir} is not an iommufs mount\n`)
    })

    it('--daemon prints a live pid; iommufs unmount stops it and the mount disappears', async () => {
      let pid = 0
      try {
        const r = await iommufs(['mount', dir, '--daemon'])
        assert.equal(r.code, 0, r.stderr)
        assert.match(r.stdout, /^\d+\n$/)
        pid = Number(r.stdout)
        assert.equal(await isAlive(pid), true)
        assert.equal(await isMounted(dir), true)
        const info = await sh(`cat ${dir}/sys/kernel/debug/iommufd/server`)
        assert.equal(info.stdout.split('\n')[0], `pid ${pid}`)

        const u = await iommufs(['unmount', dir])
        assert.equal(u.code, 0, u.stderr)
        assert.equal(await isMounted(dir), false)
        await eventually(async () => !(await isAlive(pid)), `server ${pid} exits`)
        const gone = await sh(`ls -A ${dir}`)
        assert.equal(gone.stdout, '')
      } finally {
        if (pid && (await isAlive(pid))) process.kill(pid, 'SIGKILL')
      }
    })
  })

  describe('one register field changed in the topology changes exactly the dependent files', () => {
    const idr = (reg: string, ref: string, word: bigint, value: bigint): [string, string] => {
      const f = lookupField(registerModel('arm-smmu-v3'), ref)!
      const hex = (w: bigint): string => `0x${w.toString(16).padStart(8, '0')}`
      return [`${reg}: ${hex(word)}`, `${reg}: ${hex(depositField(word, f, value))}`]
    }
    const SMMUS = ['smmu3.0x0000000009050000', 'smmu3.0x0000000009060000']
    const cases: [string, [string, string], string[]][] = [
      ['IDR0.HTTU access+dirty -> access', idr('IDR0', 'IDR0.HTTU', 0x0c4d76bbn, 1n), ['httu', 'idr0']],
      ['IDR1.SSIDSIZE 20 -> 0', idr('IDR1', 'IDR1.SSIDSIZE', 0x01084510n, 0n), ['idr1', 'ssid_bits']],
      ['IDR0.S2P 1 -> 0', idr('IDR0', 'IDR0.S2P', 0x0c4d76bbn, 0n), ['idr0', 'nesting', 's2']],
    ]
    let data: Awaited<ReturnType<typeof tempDataDir>>
    let base: Map<string, string>
    before(async () => {
      data = await tempDataDir()
      const m = await startMount()
      try {
        base = await classTree(m)
      } finally {
        await m.stop()
      }
    })
    after(async () => data.cleanup())

    cases.forEach(([what, [from, to], files], i) => {
      it(what, async () => {
        // the default machine's two SMMUs share one register block (a YAML anchor): both change
        const text = edit(await fsp.readFile(DEFAULT_TOPOLOGY, 'utf8'), from, to)
        const topology = await data.write(`changed-${i}.yaml`, text)
        const m = await startMount({ topology })
        let after: Map<string, string>
        try {
          after = await classTree(m)
        } finally {
          await m.stop()
        }
        const expected = SMMUS.flatMap((u) => files.map((f) => `sys/class/iommu/${u}/arm-smmu-v3/${f}`)).sort()
        assert.deepEqual(changed(base, after), expected)
      })
    })

    it('the base tree has the values the changes start from', () => {
      assert.equal(base.get('sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3/httu'), 'access+dirty')
      assert.equal(base.get('sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3/ssid_bits'), '20')
      assert.equal(base.get('sys/class/iommu/smmu3.0x0000000009060000/arm-smmu-v3/nesting'), '1')
    })
  })
})
