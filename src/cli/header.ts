/**
 * `iommufs header`: the C header of the uAPI the model implements, printed
 * from the same tables the server decodes with (src/uapi/structs.ts for the
 * layouts, src/uapi/ioctls.ts for the numbers, src/uapi/names.ts for the
 * enums). C programs (examples/c) compile against it, so a struct has one
 * definition; the header's _Static_asserts make gcc check that C lays it out
 * at the offsets the table computed.
 */
import { VTD_ERRATA_772415_SPR17 } from '../iommufd/driver'
import { IOCTLS, Ioctl } from '../uapi/ioctls'
import { FieldSpec, Scalar, StructLayout } from '../uapi/layout'
import { NAMES, VfioBindFlag } from '../uapi/names'
import { VfioDmaMapFlag, VfioDmaUnmapFlag, VfioExtension } from '../iommufd/vfio-compat'
import { STRUCTS } from '../uapi/structs'
import { pythonModule } from './python'

export const HEADER_HELP = `usage: iommufs header [--python]

Prints iommufd.h: the ioctl numbers, struct layouts and enums of
include/uapi/linux/iommufd.h and the VFIO cdev commands, as the model
implements them (generated from src/uapi). \`make\` writes it to
dist/include/iommufd.h for the C examples.

  --python   print the Python module instead (python/iommufs.py): the same
             structs as ctypes structures, the ioctl numbers and constants,
             and a helper to open /dev/iommu and issue requests
`

const C_TYPE: Record<Scalar, string> = { u8: '__u8', u16: '__u16', u32: '__u32', s32: '__s32', u64: '__aligned_u64' }

/**
 * C spelling of each name set's constants: the kernel's enum name and the
 * constant's prefix (IOMMU_HWPT_ALLOC_ + NEST_PARENT). A value whose kernel
 * name breaks the pattern is listed in full.
 */
const ENUMS: Record<string, { cname: string; prefix: string; except?: Record<string, string> }> = {
  ioas_map_flags: { cname: 'iommufd_ioas_map_flags', prefix: 'IOMMU_IOAS_MAP_' },
  iommufd_hwpt_alloc_flags: { cname: 'iommufd_hwpt_alloc_flags', prefix: 'IOMMU_HWPT_ALLOC_', except: { FAULT_ID_VALID: 'IOMMU_HWPT_FAULT_ID_VALID' } },
  iommu_hwpt_data_type: { cname: 'iommu_hwpt_data_type', prefix: 'IOMMU_HWPT_DATA_' },
  iommu_hw_info_type: { cname: 'iommu_hw_info_type', prefix: 'IOMMU_HW_INFO_TYPE_' },
  iommufd_hw_capabilities: { cname: 'iommufd_hw_capabilities', prefix: 'IOMMU_HW_CAP_' },
  iommufd_hw_info_flags: { cname: 'iommufd_hw_info_flags', prefix: 'IOMMU_HW_INFO_FLAG_' },
  iommu_viommu_type: { cname: 'iommu_viommu_type', prefix: 'IOMMU_VIOMMU_TYPE_' },
  iommu_veventq_type: { cname: 'iommu_veventq_type', prefix: 'IOMMU_VEVENTQ_TYPE_' },
  iommu_veventq_flag: { cname: 'iommu_veventq_flag', prefix: 'IOMMU_VEVENTQ_FLAG_' },
  iommu_hw_queue_type: { cname: 'iommu_hw_queue_type', prefix: 'IOMMU_HW_QUEUE_TYPE_' },
  iommufd_option: { cname: 'iommufd_option', prefix: 'IOMMU_OPTION_' },
  iommufd_option_ops: { cname: 'iommufd_option_ops', prefix: 'IOMMU_OPTION_OP_' },
  iommufd_vfio_ioas_op: { cname: 'iommufd_vfio_ioas_op', prefix: 'IOMMU_VFIO_IOAS_' },
  iommufd_hwpt_set_dirty_tracking_flags: { cname: 'iommufd_hwpt_set_dirty_tracking_flags', prefix: 'IOMMU_HWPT_DIRTY_TRACKING_' },
  iommufd_hwpt_get_dirty_bitmap_flags: { cname: 'iommufd_hwpt_get_dirty_bitmap_flags', prefix: 'IOMMU_HWPT_GET_DIRTY_BITMAP_' },
  iommu_hwpt_vtd_s1_flags: { cname: 'iommu_hwpt_vtd_s1_flags', prefix: 'IOMMU_VTD_S1_' },
  iommu_hwpt_invalidate_data_type: {
    cname: 'iommu_hwpt_invalidate_data_type',
    prefix: 'IOMMU_HWPT_INVALIDATE_DATA_',
    except: { ARM_SMMUV3: 'IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3' },
  },
  iommu_hwpt_vtd_s1_invalidate_flags: { cname: 'iommu_hwpt_vtd_s1_invalidate_flags', prefix: 'IOMMU_VTD_INV_FLAGS_' },
  iommufs_dma_flags: { cname: 'iommufs_dma_flags', prefix: 'IOMMUFS_DMA_' },
  iommufs_dma_status: { cname: 'iommufs_dma_status', prefix: 'IOMMUFS_DMA_STATUS_' },
  iommufs_mmap_flags: { cname: 'iommufs_mmap_flags', prefix: 'IOMMUFS_MMAP_' },
  iommu_test_op: { cname: 'iommu_test_op', prefix: 'IOMMU_TEST_OP_' },
  iommu_hwpt_pgfault_flags: { cname: 'iommu_hwpt_pgfault_flags', prefix: 'IOMMU_PGFAULT_FLAGS_' },
  iommu_hwpt_pgfault_perm: { cname: 'iommu_hwpt_pgfault_perm', prefix: 'IOMMU_PGFAULT_PERM_' },
  iommufd_page_response_code: { cname: 'iommufd_page_response_code', prefix: 'IOMMUFD_PAGE_RESP_' },
}

/** Name sets spelled elsewhere in the header (the VFIO flags sit with their structs). */
const NOT_ENUMS = new Set(['vfio_device_attach_flags'])

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`
}

/** A field; one with an alias is the kernel's union of an in and an out name. */
function fieldDecl(f: FieldSpec): string {
  const arr = f.count > 1 ? `[${f.count}]` : ''
  if (f.union) {
    const members = Object.entries(f.union).map(([m, l]) => `\t\tstruct ${l.name} ${m};`)
    return [`\tunion {`, ...members, `\t\t${C_TYPE[f.type]} ${f.name}${arr};`, '\t};'].join('\n')
  }
  const alias = f.alias
  const note = f.pointer ? ` /* user pointer: ${f.pointer.flow} buffer */` : ''
  if (alias) return `\tunion {\n\t\t${C_TYPE[f.type]} ${alias}${arr};\n\t\t${C_TYPE[f.type]} ${f.name}${arr};\n\t};${note}`
  return `\t${C_TYPE[f.type]} ${f.name}${arr};${note}`
}

function structDef(l: StructLayout): string {
  const lines = [`struct ${l.name} {`, ...l.fields.map(fieldDecl), '};']
  lines.push('#ifndef __cplusplus')
  lines.push(`_Static_assert(sizeof(struct ${l.name}) == ${l.size}, "struct ${l.name} is ${l.size} bytes");`)
  for (const f of l.fields) {
    lines.push(`_Static_assert(__builtin_offsetof(struct ${l.name}, ${f.name}) == ${f.offset}, "${l.name}.${f.name} at ${f.offset}");`)
  }
  lines.push('#endif')
  return lines.join('\n')
}

/** A name set's constants as C spells them (IOMMU_HWPT_ALLOC_NEST_PARENT), or undefined when the header knows no spelling. */
export function constantNames(set: string): { cname: string; constants: [string, number | bigint][] } | undefined {
  const spec = ENUMS[set]
  if (!spec || NOT_ENUMS.has(set)) return undefined
  return { cname: spec.cname, constants: Object.entries(NAMES[set].values).map(([k, v]) => [spec.except?.[k] ?? spec.prefix + k, v]) }
}

function enumDef(set: string): string {
  const spelled = constantNames(set)
  if (!spelled) {
    const list = Object.entries(NAMES[set].values).map(([k, v]) => `${k}=${hex(v)}`).join(', ')
    return `/* ${set}: ${list} (no C spelling known to \`iommufs header\`) */`
  }
  const body = spelled.constants.map(([k, v]) => `\t${k} = ${hex(v)}${typeof v === 'bigint' && v > 0x7fffffffn ? 'ULL' : ''},`)
  return [`enum ${spelled.cname} {`, ...body, '};'].join('\n')
}

function cmdName(i: Ioctl): string {
  return `IOMMUFD_CMD_${i.name.replace(/^IOMMU_/, '')}`
}

function ioctlDefine(i: Ioctl): string {
  const nr = i.cmd & 0xff
  const min = i.minSize === i.layout.size ? '' : `, size >= ${i.minSize}`
  if (i.family === 'vfio') return `#define ${i.name} _IO(VFIO_TYPE, VFIO_BASE + ${nr - 100}) /* ${hex(i.cmd)}: struct ${i.layout.name}, argsz >= ${i.minSize} */`
  return `#define ${i.name} _IO(IOMMUFD_TYPE, ${cmdName(i)}) /* ${hex(i.cmd)}: struct ${i.layout.name}${min} */`
}

/** The flags each VFIO struct carries, with the prefix <linux/vfio.h> spells them with. */
const VFIO_STRUCT_FLAGS: Readonly<Record<string, [string, Readonly<Record<string, number>>]>> = {
  VFIO_IOMMU_MAP_DMA: ['VFIO_DMA_MAP_FLAG_', VfioDmaMapFlag],
  VFIO_IOMMU_UNMAP_DMA: ['VFIO_DMA_UNMAP_FLAG_', VfioDmaUnmapFlag],
  VFIO_DEVICE_BIND_IOMMUFD: ['VFIO_DEVICE_BIND_FLAG_', VfioBindFlag],
}

/** VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU values as <linux/vfio.h> names them. */
const VFIO_EXTENSION_NAMES: Readonly<Record<keyof typeof VfioExtension, string>> = {
  TYPE1: 'VFIO_TYPE1_IOMMU',
  TYPE1v2: 'VFIO_TYPE1v2_IOMMU',
  DMA_CC_IOMMU: 'VFIO_DMA_CC_IOMMU',
  TYPE1_NESTING: 'VFIO_TYPE1_NESTING_IOMMU',
  NOIOMMU: 'VFIO_NOIOMMU_IOMMU',
  UNMAP_ALL: 'VFIO_UNMAP_ALL',
  UPDATE_VADDR: 'VFIO_UPDATE_VADDR',
}

/** The whole header text. */
export function iommufdHeader(): string {
  const iommufd = IOCTLS.filter((i) => i.family === 'iommufd')
  const vfio = IOCTLS.filter((i) => i.family === 'vfio')
  const byLayout = new Map<string, Ioctl[]>()
  for (const i of IOCTLS) byLayout.set(i.layout.name, [...(byLayout.get(i.layout.name) ?? []), i])
  const layouts = [...STRUCTS.values()]
  const out: string[] = []

  out.push(`/* SPDX-License-Identifier: MIT */
/*
 * iommufd.h: the iommufd and VFIO cdev uAPI as iommufs models it (numbers,
 * struct layouts and enums of include/uapi/linux/iommufd.h and the VFIO cdev
 * part of include/uapi/linux/vfio.h).
 *
 * GENERATED by \`iommufs header\` from src/uapi/structs.ts, src/uapi/ioctls.ts
 * and src/uapi/names.ts. Do not edit: change the tables and rebuild.
 */
#ifndef _IOMMUFS_IOMMUFD_H
#define _IOMMUFS_IOMMUFD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#ifndef __aligned_u64
#define __aligned_u64 __u64 __attribute__((aligned(8)))
#endif

#define IOMMUFD_TYPE (';')

enum {
\tIOMMUFD_CMD_BASE = 0x80,`)
  for (const i of iommufd) out.push(`\t${cmdName(i)} = ${hex(i.cmd & 0xff)},`)
  out.push('};\n')

  for (const set of Object.keys(NAMES)) if (!NOT_ENUMS.has(set)) out.push(enumDef(set), '')
  out.push(`#define IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 ${hex(VTD_ERRATA_772415_SPR17)}`, '')
  // the kernel's second name for NONE: GET_HW_INFO's in_data_type asking for the device's own type
  out.push(`#define IOMMU_HW_INFO_TYPE_DEFAULT IOMMU_HW_INFO_TYPE_NONE`, '')

  out.push('/* ---- iommufd commands ---- */', '')
  const unionMembers = new Set(layouts.flatMap((l) => l.fields.flatMap((f) => Object.values(f.union ?? {}).map((m) => m.name))))
  for (const l of layouts.filter((x) => !x.name.startsWith('vfio_') && byLayout.has(x.name))) {
    // a union's member structs come first, as C needs them complete
    const members = new Set(l.fields.flatMap((f) => Object.values(f.union ?? {})))
    for (const m of members) out.push(structDef(m), '')
    out.push(structDef(l), ...(byLayout.get(l.name) ?? []).map(ioctlDefine), '')
  }
  out.push('/* ---- driver data behind user pointers ---- */', '')
  for (const l of layouts.filter((x) => !x.name.startsWith('vfio_') && !byLayout.has(x.name) && !unionMembers.has(x.name))) out.push(structDef(l), '')

  out.push(`/* ---- VFIO cdev commands (skipped where <linux/vfio.h> already defined them) ---- */

#ifndef VFIO_TYPE
#define VFIO_TYPE (';')
#define VFIO_BASE 100
#endif
`)
  for (const i of vfio) {
    const attachFlags = i.layout.fields.some((f) => f.names === 'vfio_device_attach_flags')
    const verb = i.name.includes('DETACH') ? 'DETACH' : 'ATTACH'
    out.push(`#ifndef ${i.name}`, structDef(i.layout))
    if (attachFlags) for (const [k, v] of Object.entries(NAMES.vfio_device_attach_flags.values)) out.push(`#define VFIO_DEVICE_${verb}_${k} ${hex(v)}`)
    const flags = VFIO_STRUCT_FLAGS[i.name]
    if (flags) for (const [k, v] of Object.entries(flags[1])) out.push(`#define ${flags[0]}${k} ${hex(v)}`)
    out.push(ioctlDefine(i), '#endif', '')
  }
  out.push('/* commands that take a value, not a struct, and the values VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU take */')
  for (const i of IOCTLS.filter((x) => x.family === 'arg')) out.push(`#ifndef ${i.name}`, `#define ${i.name} _IO(VFIO_TYPE, VFIO_BASE + ${(i.cmd & 0xff) - 100}) /* ${hex(i.cmd)} */`, '#endif')
  for (const [k, v] of Object.entries(VfioExtension)) {
    const name = VFIO_EXTENSION_NAMES[k as keyof typeof VfioExtension]
    out.push(`#ifndef ${name}`, `#define ${name} ${v}`, '#endif')
  }
  out.push('')
  out.push('#endif /* _IOMMUFS_IOMMUFD_H */')
  return `${out.join('\n')}\n`
}

export async function headerCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(HEADER_HELP)
    return 0
  }
  const python = args[0] === '--python'
  if (args.length > (python ? 1 : 0)) {
    process.stderr.write(`iommufs: header takes only --python, got "${args[python ? 1 : 0]}" (see iommufs header --help)\n`)
    return 2
  }
  process.stdout.write(python ? pythonModule() : iommufdHeader())
  return 0
}
