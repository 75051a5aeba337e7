/**
 * Pinned pages as the kernel's checks see them, through the shim with
 * compiled C programs (test/c): a file mapping's pages are the file's
 * (MD_CHECK_MAP, MD_CHECK_REFS, ACCESS_PAGES by identity).
 */
import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import { iommufs } from '../helpers/cli'
import { withMount } from '../helpers/mount'
import { PACKAGE_ROOT } from '../../src/util/paths'

const bin = (name: string): string => path.join(PACKAGE_ROOT, 'dist', 'test', 'c', name)

/** Runs a test program under the shim on a fresh mount; its output lines. */
async function run(name: string): Promise<string[]> {
  let lines: string[] = []
  await withMount(async (m) => {
    const r = await iommufs(['exec', '--mount', m.dir, '--', bin(name)])
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
})
