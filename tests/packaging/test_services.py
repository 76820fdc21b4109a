"""The systemd units (etc/systemd) and upstart jobs (etc/upstart) of the daemons.

``systemd-analyze verify`` checks each unit as systemd would load it; the
upstart jobs get the stanza check of tests/packaging/upstart.py. Both kinds
must start the same command line, one that the packages install.
"""

import configparser
import glob
import os
import shlex
import shutil
import subprocess

import pytest

from tests.packaging import upstart

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = sorted(glob.glob(os.path.join(ROOT, 'etc', 'systemd', '*.service')))
JOBS = sorted(glob.glob(os.path.join(ROOT, 'etc', 'upstart', '*.conf')))
CONFIG = '/etc/gridcentric-storage/gridcentric-storage.conf'
#: upstart job -> the unit of the same daemon (the seed's job name for compute)
JOB_UNIT = {'gridcentric-api.conf': 'gridcentric-api.service',
            'nova-gridcentric.conf': 'gridcentric-compute.service'}
#: launchers in bin/ that stand for a console script
LAUNCHERS = {'nova-gc': 'gridcentric-compute'}


def unit(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=('=',))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def console_scripts() -> set[str]:
    setup = configparser.RawConfigParser()
    setup.read(os.path.join(ROOT, 'setup.cfg'))
    lines = setup.get('entry_points', 'console_scripts').strip().splitlines()
    return {line.split('=')[0].strip() for line in lines}


def installed_by(package_file: str) -> set[str]:
    """Program names a debian/*.install file puts into /usr/bin."""
    with open(os.path.join(ROOT, 'debian', package_file)) as f:
        entries = [line.split() for line in f if line.strip()]
    return {os.path.basename(e[0]) for e in entries
            if e[0].startswith('usr/bin/') or e[1:] == ['usr/bin/']}


def test_every_daemon_has_a_unit_and_an_upstart_job():
    assert [os.path.basename(u) for u in UNITS] == ['gridcentric-api.service',
                                                    'gridcentric-compute.service']
    assert sorted(os.path.basename(j) for j in JOBS) == sorted(JOB_UNIT)


@pytest.mark.parametrize('path', UNITS, ids=os.path.basename)
def test_unit_passes_systemd_analyze_verify(path, tmp_path):
    analyze = shutil.which('systemd-analyze')
    if analyze is None:
        pytest.skip('systemd-analyze is not installed (apt-get install systemd)')
    # verify insists the program exists; before the packages are installed it
    # is a stand-in of the same name (tools/package-lane.sh verifies the real one)
    program = shlex.split(unit(path)['Service']['ExecStart'])[0]
    text = open(path).read()
    if not os.access(program, os.X_OK):
        stand_in = tmp_path / os.path.basename(program)
        stand_in.write_text('#!/bin/sh\n')
        stand_in.chmod(0o755)
        text = text.replace('ExecStart=%s ' % program, 'ExecStart=%s ' % stand_in)
    copy = tmp_path / os.path.basename(path)
    copy.write_text(text)
    result = subprocess.run([analyze, 'verify', '--man=no', str(copy)], capture_output=True,
                            text=True, timeout=60, check=False)
    # unknown keys and bad values are only warnings: any output is a failure
    assert (result.returncode, result.stdout + result.stderr) == (0, '')


def test_systemd_analyze_verify_reports_what_this_test_relies_on(tmp_path):
    """A misspelt key must show up in verify's output, or the test above proves nothing."""
    analyze = shutil.which('systemd-analyze')
    if analyze is None:
        pytest.skip('systemd-analyze is not installed (apt-get install systemd)')
    bad = tmp_path / 'bad.service'
    bad.write_text('[Service]\nExecStart=/bin/true\nRestrat=on-failure\n')
    result = subprocess.run([analyze, 'verify', '--man=no', str(bad)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert 'Restrat' in result.stdout + result.stderr


@pytest.mark.parametrize('path', UNITS, ids=os.path.basename)
def test_unit_runs_as_the_service_user_with_config_and_log_file(path):
    service = unit(path)['Service']
    argv = shlex.split(service['ExecStart'])
    name = os.path.basename(argv[0])
    assert name in console_scripts()
    assert argv[0] == '/usr/bin/' + name
    assert argv[1:] == ['--config-file', CONFIG,
                        '--log-file', '/var/log/gridcentric-storage/%s.log' % name]
    assert (service['User'], service['Group']) == ('gridcentric', 'gridcentric')
    assert service['RuntimeDirectory'] == 'gridcentric-storage'
    assert service['WorkingDirectory'] == '/var/lib/gridcentric-storage'
    assert service['Restart'] == 'on-failure'
    package = 'gridcentric-storage-%s' % name.split('-', 1)[1]
    assert name in installed_by(package + '.install')
    assert 'etc/systemd/%s' % os.path.basename(path) in open(
        os.path.join(ROOT, 'debian', package + '.install')).read()


def test_compute_unit_keeps_qemu_libvirt_and_privsep_working():
    service = unit(os.path.join(ROOT, 'etc', 'systemd', 'gridcentric-compute.service'))['Service']
    # /dev/kvm and block devices, sudo for os-brick's helper, /etc/lvm for it
    assert service.get('PrivateDevices', 'no') == 'no'
    assert service.get('NoNewPrivileges', 'no') == 'no'
    assert service.get('ProtectSystem') in (None, 'true', 'yes')
    assert set(service['SupplementaryGroups'].split()) == {'kvm', 'libvirt'}
    # qemu:///system and QMP are unix sockets; iSCSI and LVM use netlink
    assert {'AF_UNIX', 'AF_NETLINK'} <= set(service['RestrictAddressFamilies'].split())
    # QEMU children are the service's to stop (it pauses and saves them)
    assert service['KillMode'] == 'mixed'


def test_api_unit_is_hardened():
    service = unit(os.path.join(ROOT, 'etc', 'systemd', 'gridcentric-api.service'))['Service']
    assert (service['NoNewPrivileges'], service['PrivateDevices'],
            service['ProtectSystem']) == ('yes', 'yes', 'strict')
    assert set(service['ReadWritePaths'].split()) == {'/var/lib/gridcentric-storage',
                                                       '/var/log/gridcentric-storage'}


@pytest.mark.parametrize('path', JOBS, ids=os.path.basename)
def test_upstart_job_passes_the_stanza_check(path):
    assert upstart.check(open(path).read()) == []


@pytest.mark.parametrize('path', JOBS, ids=os.path.basename)
def test_upstart_job_runs_what_the_unit_runs(path):
    job, _ = upstart.parse(open(path).read())
    assert job.main is not None
    # start-stop-daemon changes user so that pre-start stays root
    assert job.main[:5] == ['start-stop-daemon', '--start', '--chuid', 'gridcentric', '--exec']
    program, separator, args = job.main[5], job.main[6], job.main[7:]
    assert separator == '--'
    unit_argv = shlex.split(unit(os.path.join(ROOT, 'etc', 'systemd', JOB_UNIT[
        os.path.basename(path)]))['Service']['ExecStart'])
    name = os.path.basename(program)
    assert LAUNCHERS.get(name, name) == os.path.basename(unit_argv[0])
    assert args == unit_argv[1:]
    assert job.stanzas['chdir'] == ['/var/lib/gridcentric-storage']
    assert job.stanzas['stop on'] == ['runlevel [016]']


@pytest.mark.parametrize('text, problem', [
    ('description "x"\nstart on (filesystem and net-device-up IFACE!=lo\nstop on runlevel [016]\n'
     'respawn\nchdir /\nexec /bin/true\n', 'unbalanced parentheses'),
    ('description "x"\nstart on filesystem and\nstop on runlevel [016]\n'
     'respawn\nchdir /\nexec /bin/true\n', 'ends with an operator'),
    ('description "x"\nstart on filesystem\nstop on runlevel [016]\nrespawn\nchdir /\n'
     'pre-start script\n  mkdir /run/x\nexec /bin/true\n', 'without "end script"'),
    ('description "x"\nstart on filesystem\nstop on runlevel [016]\nrespwan\nchdir /\n'
     'exec /bin/true\n', "unknown stanza 'respwan'"),
    ('description "x"\nstart on filesystem\nstop on runlevel [016]\nrespawn\nchdir /\n',
     'exactly one main process'),
    ('description "x"\nstart on filesystem\nstop on runlevel [016]\nrespawn\nexec /bin/true\n',
     'no chdir stanza'),
])
def test_stanza_check_finds_broken_jobs(text, problem):
    assert any(problem in p for p in upstart.check(text)), upstart.check(text)
