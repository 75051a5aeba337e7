import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { CLI, iommufs, makeTempDir } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const NESTED = [
  'DEVICE_BIND pci=0000:00:01.0',
  'IOAS_ALLOC',
  'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT',
  'DEVICE_ATTACH dev_id=1 pt_id=3',
  'VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3',
  'VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10',
  'HWPT_ALLOC dev_id=1 pt_id=4 data_type=ARM_SMMUV3 data.ste=0x4000100b,0x0',
  'DEVICE_ATTACH dev_id=1 pt_id=6',
]

/** The text of an SVG's <text> elements, in document order. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1].replace(/&gt;/g, '>').replace(/&#45;/g, '-'))
}

describe('iommufs graph: SVG without a system Graphviz', () => {
  it("a live context's objects with IDs, references, VMID, StreamID and the vSID -> pSID map", async () => {
    await withMount(async (m) => {
      const script = ['exec 3<>dev/iommu', ...NESTED.map((l) => `echo "${l}" >&3; read -u 3 r; [[ $r == ok* ]] || { echo "$r"; exit 1; }`), `node "$CLI" graph --mount "$PWD" --context 1`, 'exec 3>&-'].join('\n')
      const r = await sh(script, { cwd: m.dir, env: { CLI } })
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^<\?xml[^]*<svg [^]*<\/svg>\n?$/)
      const t = texts(r.stdout)
      for (const want of ['iommufd context 1', '1: device', 'StreamID 0x8', '4: viommu', 'VMID 1', 'vSID 0x10 -> pSID 0x8', '5: vdevice', '6: hwpt_nested', 'STE s1-translate', 'smmu3.0x0000000009050000', 'parent', 'attached']) {
        assert.ok(t.includes(want), `no "${want}" in ${JSON.stringify(t)}`)
      }
    })
  })

  it('the topology: each IOMMU with its devices, to a file with -o', async () => {
    const dir = await makeTempDir()
    try {
      const out = path.join(dir, 't.svg')
      const r = await iommufs(['graph', '--topology', '-o', out])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, '')
      const t = texts(await fsp.readFile(out, 'utf8'))
      for (const want of ['dmar0', 'intel-vtd', 'smmu3.0x0000000009060000', '0000:01:01.0', 'StreamID 0x108', 'RID 0x0208', 'group 5, vfio5']) assert.ok(t.includes(want), `no "${want}" in ${JSON.stringify(t)}`)
    } finally {
      await fsp.rm(dir, { recursive: true, force: true })
    }
  })

  it('bad input: a context that does not exist, a broken .dot file, two sources: one line, exit 2', async () => {
    await withMount(async (m) => {
      const none = await iommufs(['graph', '--mount', m.dir, '--context', '9'])
      assert.deepEqual([none.code, none.stderr], [2, `iommufs: no context 9 on ${m.dir}\n`])
      const idle = await iommufs(['graph', '--mount', m.dir])
      assert.deepEqual([idle.code, idle.stderr], [2, `iommufs: no live context on ${m.dir} (open dev/iommu first)\n`])
    })
    const dir = await makeTempDir()
    try {
      const bad = path.join(dir, 'bad.dot')
      await fsp.writeFile(bad, 'digraph { a -> }\n')
      const r = await iommufs(['graph', bad])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /^iommufs: Graphviz: [^\n]*syntax error[^\n]*\n$/)
      const two = await iommufs(['graph', bad, '--topology'])
      assert.deepEqual([two.code, two.stderr], [2, 'iommufs: give one of --mount/--context, --topology or a .dot file\n'])
    } finally {
      await fsp.rm(dir, { recursive: true, force: true })
    }
  })
})
