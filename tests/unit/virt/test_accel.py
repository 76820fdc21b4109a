"""The KVM probe and the QEMU driver on a host where QEMU is not installed."""

from gridcentric_storage.virt import accel
from gridcentric_storage.virt.qemu import QemuDriver


def test_choose_without_the_binary_is_tcg_with_the_reason():
    probe = accel.choose('auto', 'gc-no-such-qemu')
    assert probe == accel.Probe('tcg', 'gc-no-such-qemu not found')


def test_probe_of_a_missing_binary_never_raises(tmp_path):
    probe = accel.probe_kvm(str(tmp_path / 'qemu-system-x86_64'))
    assert probe.accel == 'tcg'
    # Either /dev/kvm is unusable here, or QEMU could not be run: both say so.
    assert '/dev/kvm' in probe.reason or 'cannot run' in probe.reason, probe.reason


def test_qemu_driver_reports_the_missing_hypervisor_and_starts(tmp_path):
    driver = QemuDriver(instances_path=str(tmp_path / 'i'),
                        live_images_path=str(tmp_path / 'l'), qemu_binary='gc-no-such-qemu')
    assert driver.hypervisor_error == 'gc-no-such-qemu not found'
    driver.init_host('h1')  # no probe, no exception
    assert driver.list_instances() == []
