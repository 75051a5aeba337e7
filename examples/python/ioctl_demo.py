#!/usr/bin/env python3
"""iommufd from Python with fcntl.ioctl and ctypes, as on a real kernel.

The structs below are declared from the kernel's include/uapi/linux/iommufd.h
(and the VFIO cdev part of linux/vfio.h), as a Python program would; nothing
here knows about iommufs. Run it under the ioctl shim:

    iommufs exec -- python3 examples/python/ioctl_demo.py [/dev/vfio/devices/vfio1]

Prints one line per ioctl: "STEP: ok field=value ..." or "STEP: err ERRNO".
"""
import ctypes
import errno
import fcntl
import os
import sys

u8, u32, s32, u64 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64


def _IO(type_char, nr):
    return (ord(type_char) << 8) | nr


IOMMUFD_TYPE = ';'
IOMMU_DESTROY = _IO(IOMMUFD_TYPE, 0x80)
IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, 0x81)
IOMMU_IOAS_IOVA_RANGES = _IO(IOMMUFD_TYPE, 0x84)
IOMMU_GET_HW_INFO = _IO(IOMMUFD_TYPE, 0x8A)
VFIO_DEVICE_BIND_IOMMUFD = _IO(';', 100 + 18)

IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2


class Struct(ctypes.Structure):
    def fields(self, *names):
        return ' '.join(f'{n}={getattr(self, n)}' for n in names)


class vfio_device_bind_iommufd(Struct):
    _fields_ = [('argsz', u32), ('flags', u32), ('iommufd', s32), ('out_devid', u32), ('token_uuid_ptr', u64)]


class iommu_destroy(Struct):
    _fields_ = [('size', u32), ('id', u32)]


class iommu_ioas_alloc(Struct):
    _fields_ = [('size', u32), ('flags', u32), ('out_ioas_id', u32)]


class iommu_iova_range(Struct):
    _fields_ = [('start', u64), ('last', u64)]


class iommu_ioas_iova_ranges(Struct):
    _fields_ = [('size', u32), ('ioas_id', u32), ('num_iovas', u32), ('__reserved', u32),
                ('allowed_iovas', u64), ('out_iova_alignment', u64)]


class iommu_hw_info(Struct):
    _fields_ = [('size', u32), ('flags', u32), ('dev_id', u32), ('data_len', u32), ('data_uptr', u64),
                ('out_data_type', u32), ('out_max_pasid_log2', u8), ('__reserved', u8 * 3), ('out_capabilities', u64)]


class iommu_hw_info_arm_smmuv3(Struct):
    _fields_ = [('flags', u32), ('__reserved', u32), ('idr', u32 * 6), ('iidr', u32), ('aidr', u32)]


def call(step, fd, cmd, arg):
    """ioctl(fd, cmd, &arg): True on success; prints the errno otherwise."""
    try:
        fcntl.ioctl(fd, cmd, arg, True)
        return True
    except OSError as e:
        print(f'{step}: err {errno.errorcode.get(e.errno, e.errno)}')
        return False


def main():
    dev_path = sys.argv[1] if len(sys.argv) > 1 else '/dev/vfio/devices/vfio1'
    iommufd = os.open('/dev/iommu', os.O_RDWR)
    devfd = os.open(dev_path, os.O_RDWR)

    bind = vfio_device_bind_iommufd(argsz=ctypes.sizeof(vfio_device_bind_iommufd), iommufd=iommufd)
    if not call('VFIO_DEVICE_BIND_IOMMUFD', devfd, VFIO_DEVICE_BIND_IOMMUFD, bind):
        return 1
    print(f'VFIO_DEVICE_BIND_IOMMUFD: ok {bind.fields("out_devid")}')

    ioas = iommu_ioas_alloc(size=ctypes.sizeof(iommu_ioas_alloc))
    if not call('IOMMU_IOAS_ALLOC', iommufd, IOMMU_IOAS_ALLOC, ioas):
        return 1
    print(f'IOMMU_IOAS_ALLOC: ok {ioas.fields("out_ioas_id")}')

    ranges = (iommu_iova_range * 4)()
    r = iommu_ioas_iova_ranges(size=ctypes.sizeof(iommu_ioas_iova_ranges), ioas_id=ioas.out_ioas_id, num_iovas=4,
                               allowed_iovas=ctypes.addressof(ranges))
    if not call('IOMMU_IOAS_IOVA_RANGES', iommufd, IOMMU_IOAS_IOVA_RANGES, r):
        return 1
    listed = ','.join(f'0x{x.start:x}-0x{x.last:x}' for x in ranges[:r.num_iovas])
    print(f'IOMMU_IOAS_IOVA_RANGES: ok num_iovas={r.num_iovas} out_iova_alignment=0x{r.out_iova_alignment:x} ranges={listed}')

    regs = iommu_hw_info_arm_smmuv3()
    hw = iommu_hw_info(size=ctypes.sizeof(iommu_hw_info), dev_id=bind.out_devid,
                       data_len=ctypes.sizeof(regs), data_uptr=ctypes.addressof(regs))
    if not call('IOMMU_GET_HW_INFO', iommufd, IOMMU_GET_HW_INFO, hw):
        return 1
    idr = ' '.join(f'idr{i}=0x{w:08x}' for i, w in enumerate(regs.idr))
    print(f'IOMMU_GET_HW_INFO: ok data_len={hw.data_len} out_data_type={hw.out_data_type} '
          f'{idr} iidr=0x{regs.iidr:08x} aidr=0x{regs.aidr:08x}')
    if hw.out_data_type != IOMMU_HW_INFO_TYPE_ARM_SMMUV3:
        print(f'{dev_path} is not behind an SMMUv3')

    gone = iommu_destroy(size=ctypes.sizeof(iommu_destroy), id=99)
    if call('IOMMU_DESTROY(99)', iommufd, IOMMU_DESTROY, gone):
        print('IOMMU_DESTROY(99): ok (unexpected)')
        return 1

    os.close(devfd)
    os.close(iommufd)
    return 0


if __name__ == '__main__':
    sys.exit(main())
