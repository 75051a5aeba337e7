/**
 * The in-process API, without FUSE: build the default machine, open a
 * context, bind a device, set up a nesting parent with text and struct
 * requests, and read the debug views.
 *
 *   node dist/examples/api/model.js          (after make build)
 *
 * In a project of your own: npm install iommufs, then the same import.
 */
import { Model } from 'iommufs'

async function main(): Promise<void> {
  const model = Model.load()
  console.log(`machine: ${model.machine.iommus.length} IOMMUs, ${model.machine.devices.length} devices`)
  console.log(`smmu model attribute: ${(await model.read('/sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3/model')).trim()}`)

  const ctx = model.openContext()
  const dev = model.openDevice('0000:00:01.0')
  // a struct request: the fields by name, as a C program fills them in
  const bind = dev.ioctl('VFIO_DEVICE_BIND_IOMMUFD', { iommufd: ctx.id })
  console.log(`bind: ${bind.errno ?? 'ok'} out_devid=${bind.fields.out_devid}`)
  // a text request
  console.log(`ioas: ${ctx.request('IOAS_ALLOC')}`)
  const hwpt = ctx.ioctl('HWPT_ALLOC', { dev_id: bind.fields.out_devid as bigint, pt_id: 2, flags: 1 })
  console.log(`nest parent: ${hwpt.errno ?? 'ok'} out_hwpt_id=${hwpt.fields.out_hwpt_id}`)
  // an output buffer: GET_HW_INFO writes the SMMUv3 registers into data_uptr
  const info = ctx.ioctl('GET_HW_INFO', { dev_id: 1, data_len: 40 })
  console.log(`hw info: type=${info.fields.out_data_type} idr0=0x${info.buffers.data_uptr.readUInt32LE(8).toString(16)}`)
  const bad = ctx.ioctl('DESTROY', { id: 99 })
  console.log(`destroy 99: ${bad.errno} ${bad.message}`)

  process.stdout.write(await model.read(`${ctx.debugPath}/objects`))
  dev.close()
  ctx.close()
  console.log(`after close: contexts ${JSON.stringify(model.list('/sys/kernel/debug/iommufd').filter((n) => /^\d+$/.test(n)))}`)
  model.close()
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
