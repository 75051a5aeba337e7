#!/usr/bin/env python3
"""iommufd from Python with the generated module (python/iommufs.py).

    iommufs run -- python3 examples/python/iommufs_demo.py

The module comes from the same struct table as iommufd.h; with an installed
prefix it is in $(pkg-config --variable=pythondir iommufs) (PYTHONPATH), in
the npm package under python/. Prints one line per step.
"""
import ctypes
import errno
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import iommufs  # noqa: E402

with iommufs.Iommufd() as fd, iommufs.VfioDevice(1) as dev:
    dev_id = dev.bind(fd)
    print(f"VFIO_DEVICE_BIND_IOMMUFD: ok out_devid={dev_id}")

    ioas = fd.ioctl(iommufs.IOMMU_IOAS_ALLOC, iommufs.iommu_ioas_alloc())
    print(f"IOMMU_IOAS_ALLOC: ok out_ioas_id={ioas.out_ioas_id}")

    hwpt = fd.ioctl(iommufs.IOMMU_HWPT_ALLOC, iommufs.iommu_hwpt_alloc(dev_id=dev_id, pt_id=ioas.out_ioas_id, flags=iommufs.IOMMU_HWPT_ALLOC_NEST_PARENT))
    print(f"IOMMU_HWPT_ALLOC: ok out_hwpt_id={hwpt.out_hwpt_id}")

    regs = iommufs.iommu_hw_info_arm_smmuv3()
    info = fd.ioctl(iommufs.IOMMU_GET_HW_INFO, iommufs.iommu_hw_info(dev_id=dev_id, data_len=ctypes.sizeof(regs), data_uptr=ctypes.addressof(regs)))
    kind = "ARM_SMMUV3" if info.out_data_type == iommufs.IOMMU_HW_INFO_TYPE_ARM_SMMUV3 else info.out_data_type
    print(f"IOMMU_GET_HW_INFO: ok out_data_type={kind} idr0={regs.idr[0]:#x}")

    try:
        fd.ioctl(iommufs.IOMMU_DESTROY, iommufs.iommu_destroy(id=99))
        print("IOMMU_DESTROY id=99: ok (unexpected)")
    except OSError as e:
        print(f"IOMMU_DESTROY id=99: err {errno.errorcode[e.errno]}")

    print(f"CONTEXT: {fd.request('CONTEXT')}")
