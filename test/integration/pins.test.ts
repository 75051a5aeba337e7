/**
 * Pinned pages as the kernel's checks see them, through the shim with
 * compiled C programs (test/c): a file mapping's pages are the file's
 * (MD_CHECK_MAP, MD_CHECK_REFS, ACCESS_PAGES by identity); pins belong to
 * the process that mapped them (a domain cannot pin an exited process's
 * memory: EFAULT) until IOAS_CHANGE_PROCESS moves them, which the model's
 * charges in the debug tree's `pinned` and the VmPin and VmLck of
 * /proc/PID/status under the shim show; an event queue's descriptor
 * holds its context past the iommufd's close.
 */
import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import { iommufs } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'
import { PACKAGE_ROOT } from '../../src/util/paths'

const bin = (name: string): string => path.join(PACKAGE_ROOT, 'dist', 'test', 'c', name)

/** Runs a test program under the shim on a fresh mount (`withDir`: the mount is its argument); its output lines. */
async function run(name: string, withDir = false): Promise<string[]> {
  let lines: string[] = []
  await withMount(async (m) => {
    const r = await iommufs(['exec', '--mount', m.dir, '--', bin(name), ...(withDir ? [m.dir] : [])])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    lines = r.stdout.trim().split('\n')
  })
  return lines
}

describe('pinned pages through the shim', function () {
  this.timeout(60000)

  it('a memfd mapped with IOAS_MAP_FILE: its pages are the file\'s at any address, other offsets and private memory are not', async () => {
    assert.deepEqual(await run('file-pages'), [
      'mock_domain: ok',
      'map_file: ok',
      'check_map_first_address: ok',
      'check_map_second_address: ok',
      'check_map_half_page: ok',
      'check_map_other_offset: EINVAL',
      'check_map_private: EINVAL',
      'refs_mapped_pages_1: ok',
      'refs_mapped_pages_1_other_address: ok',
      'refs_first_page_0: ok',
      'refs_last_page_0: ok',
      'refs_private_0: ok',
      'map_file_no_domain: ok',
      'refs_unpinned_without_domain: ok',
      'create_access: ok',
      'access_pages_file_uptr: ok',
      'refs_two_pinners: ok',
      'access_pages_wrong_offset: EBADE',
      'access_pages_private: EBADE',
      'unmap: ok',
      'refs_access_pin_left: ok',
      'refs_0_after_access_close: ok',
    ])
  })
  it('pins belong to the mapping process: EFAULT once it has exited; IOAS_CHANGE_PROCESS moves file pins to the caller (the debug tree\'s charges, and VmPin and VmLck in each process\'s /proc status under the shim), refusing user pages (EINVAL), __reserved (EOPNOTSUPP) and a charge past RLIMIT_MEMLOCK (ENOMEM); pins past RLIMIT_MEMLOCK are ENOMEM at map and at a first domain', async () => {
    assert.deepEqual(await run('pin-owner', true), [
      'gone_child_map: ok',
      'gone_attach_after_exit: EFAULT',
      'gone_unmap: ok',
      'gone_attach_after_unmap: ok',
      'unmapped_map_no_domain: ok',
      'unmapped_attach: EFAULT',
      'mock_domain: ok',
      'map_user_pages: ok',
      'change_with_user_pages: EINVAL',
      'unmap_user_pages: ok',
      'map_file: ok',
      'pinned after_map_file: parent pinned_vm=1 locked_vm=0 (VmPin 4 kB, VmLck 0 kB)',
      'pinned after_map_file: uid 0: locked_vm=1',
      'status after_map_file: parent VmPin 4 kB, VmLck 0 kB',
      'status after_map_file: parent VmPin 4 kB, VmLck 0 kB',
      'change_reserved: EOPNOTSUPP',
      'change_same_process: ok',
      'change_child: ok',
      'pinned after_child_change: child pinned_vm=1 locked_vm=0 (VmPin 4 kB, VmLck 0 kB)',
      'pinned after_child_change: uid 0: locked_vm=1',
      'status after_child_change: parent VmPin 0 kB, VmLck 0 kB',
      'status after_child_change: child VmPin 4 kB, VmLck 0 kB',
      'change_back: ok',
      'pinned after_change_back: parent pinned_vm=1 locked_vm=0 (VmPin 4 kB, VmLck 0 kB)',
      'pinned after_change_back: uid 0: locked_vm=1',
      'change_child_over_limit: ENOMEM',
      'pinned after_refused_change: parent pinned_vm=1 locked_vm=0 (VmPin 4 kB, VmLck 0 kB)',
      'pinned after_refused_change: uid 0: locked_vm=1',
      'status after_refused_change: parent VmPin 4 kB, VmLck 0 kB',
      'status after_refused_change: child VmPin 0 kB, VmLck 0 kB',
      'pinned after_close: none',
      'rlimit_mode_mm: ok',
      'mm_mock_domain: ok',
      'mm_map_file: ok',
      'pinned mm_after_map_file: parent pinned_vm=2 locked_vm=2 (VmPin 8 kB, VmLck 8 kB)',
      'status mm_after_map_file: parent VmPin 8 kB, VmLck 8 kB',
      'change_child_over_limit: ENOMEM',
      'pinned after_refused_change: parent pinned_vm=2 locked_vm=2 (VmPin 8 kB, VmLck 8 kB)',
      'status after_refused_change: parent VmPin 8 kB, VmLck 8 kB',
      'status after_refused_change: child VmPin 0 kB, VmLck 0 kB',
      'change_child: ok',
      'pinned after_child_change: child pinned_vm=2 locked_vm=2 (VmPin 8 kB, VmLck 8 kB)',
      'status after_child_change: parent VmPin 0 kB, VmLck 0 kB',
      'status after_child_change: child VmPin 8 kB, VmLck 8 kB',
      'limit_mock_domain: ok',
      'limit_map_over: ENOMEM',
      'limit_map_under: ok',
      'pinned limit_after_map: parent pinned_vm=3 locked_vm=0 (VmPin 12 kB, VmLck 0 kB)',
      'pinned limit_after_map: uid 0: locked_vm=3',
      'limit_map_past_total: ENOMEM',
      'limit_map_no_domain: ok',
      'limit_first_domain: ENOMEM',
    ])
  })
  it('a fault queue\'s or vEVENTQ\'s descriptor holds its context: closing the iommufd keeps pins and the queued request; the queue\'s close ends the context before it returns', async () => {
    assert.deepEqual(await run('queue-hold'), [
      'mock_domain: ok 0',
      'map: ok 0',
      'fault_alloc: ok 0',
      'parent_hwpt: ok 0',
      'iopf_hwpt: ok 0',
      'replace_to_iopf: ok 0',
      'trigger_iopf: ok 0',
      'refs_1: ok 0',
      'close_iommufd: ok 0',
      'iommufd_closed: EBADF',
      'refs_1_while_queue_open: ok 0',
      'fault_read: bytes=40 dev_id=3 grpid=2 addr=0xdeadbeaf',
      'fault_respond: ok 8',
      'close_queue: ok 0',
      'refs_0_after_queue_close: ok 0',
      'v_mock_domain: ok 0',
      'v_map: ok 0',
      'v_parent_hwpt: ok 0',
      'viommu: ok 0',
      'veventq_alloc: ok 0',
      'v_close_iommufd: ok 0',
      'v_refs_1_while_veventq_open: ok 0',
      'close_veventq: ok 0',
      'v_refs_0_after_veventq_close: ok 0',
    ])
  })
  it('a shell holding a queue\'s file open: RELEASE of dev/iommu keeps the context (its objects stay), the file\'s close ends it', async () => {
    await withMount(async (m) => {
      const r = await sh(`cd ${m.dir}
        exec 3<>dev/iommu
        echo IOAS_ALLOC >&3; read -u 3 r; echo "$r"
        echo FAULT_QUEUE_ALLOC >&3; read -u 3 r; echo "$r"
        q=\${r##*path=}
        echo CONTEXT >&3; read -u 3 r; ctx=\${r##*path=/}
        exec 4<"$q"
        echo RELEASE >&3; read -u 3 r; echo "release: $r"
        exec 3>&-
        cat "$ctx/objects"
        exec 4<&-
        until [ ! -e "$ctx" ]; do :; done
        echo "context gone"`)
      assert.equal(r.code, 0, r.stderr)
      assert.equal(
        r.stdout,
        [
          'ok out_ioas_id=1',
          'ok out_fault_id=2 out_fault_fd=2 path=sys/kernel/debug/iommufd/1/2.fault/queue',
          'release: ok',
          'context 1: 2 objects',
          '   1  ioas         users=0  ',
          '   2  fault        users=0  ',
          'context gone',
          '',
        ].join('\n'),
      )
    })
  })
})
