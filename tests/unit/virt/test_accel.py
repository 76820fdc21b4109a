"""The KVM probe and the QEMU driver on a host where QEMU is not installed."""

import os

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


def _fake_qemu(tmp_path, monkeypatch):
    """An executable to stand for QEMU, RUN_DIR in tmp_path, and a probe that counts."""
    binary = tmp_path / 'qemu-system-x86_64'
    binary.write_text('#!/bin/sh\nexit 1\n')
    binary.chmod(0o755)
    monkeypatch.setattr(accel, 'RUN_DIR', str(tmp_path / 'run'))
    monkeypatch.setattr(accel, '_cache', {})
    probes = []

    def probe(path, kernel=None):
        probes.append(path)
        return accel.Probe('tcg', 'KVM probe failed (test)')
    monkeypatch.setattr(accel, 'probe_kvm', probe)
    return str(binary), probes


def test_a_probe_is_kept_for_the_boot_and_redone_for_another_binary(tmp_path, monkeypatch):
    binary, probes = _fake_qemu(tmp_path, monkeypatch)
    assert accel.choose('auto', binary, kernel=None).reason == 'KVM probe failed (test)'
    monkeypatch.setattr(accel, '_cache', {})          # a second service on this host
    again = accel.choose('auto', binary, kernel=None)
    assert again == accel.Probe('tcg', 'KVM probe failed (test) (probed earlier in this boot)')
    assert len(probes) == 1
    os.utime(binary, ns=(0, 0))                          # QEMU upgraded
    monkeypatch.setattr(accel, '_cache', {})
    accel.choose('auto', binary, kernel=None)
    assert len(probes) == 2


def test_a_kept_answer_others_may_write_is_ignored(tmp_path, monkeypatch):
    binary, probes = _fake_qemu(tmp_path, monkeypatch)
    accel.choose('auto', binary, kernel=None)
    os.chmod(os.path.join(accel.RUN_DIR, 'kvm-probe.json'), 0o666)
    monkeypatch.setattr(accel, '_cache', {})
    accel.choose('auto', binary, kernel=None)
    assert len(probes) == 2
