"""A tiny pytest suite against the mount `iommufs run` made.

    iommufs run -- python3 -m pytest examples/suites/python

The text protocol needs nothing but files; the ioctl test uses the
generated `iommufs` Python module (python/iommufs.py).
"""
import os

MOUNT = os.environ["IOMMUFS_MOUNT"]


def ask(f, line):
    os.write(f, (line + "\n").encode())
    return os.read(f, 4096).decode().rstrip("\n")


def test_vtd_model_attribute():
    with open(os.path.join(MOUNT, "sys/class/iommu/dmar0/intel-vtd/model")) as f:
        assert f.read() == "1\n"


def test_text_protocol_ioas_alloc_and_destroy():
    f = os.open(os.path.join(MOUNT, "dev/iommu"), os.O_RDWR)
    try:
        assert ask(f, "IOAS_ALLOC") == "ok out_ioas_id=1"
        assert ask(f, "DESTROY id=1") == "ok"
        assert ask(f, "DESTROY id=1") == "err ENOENT id=1: no such object"
    finally:
        os.close(f)


def test_ioctl_with_the_generated_module():
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
    import errno
    import iommufs
    import pytest

    with iommufs.Iommufd() as fd:
        a = fd.ioctl(iommufs.IOMMU_IOAS_ALLOC, iommufs.iommu_ioas_alloc())
        assert a.out_ioas_id == 1
        with pytest.raises(OSError) as e:
            fd.ioctl(iommufs.IOMMU_IOAS_ALLOC, iommufs.iommu_ioas_alloc(flags=1))
        assert e.value.errno == errno.EOPNOTSUPP
