"""debian/: what can be checked without building (tools/package-lane.sh builds,
installs, runs and purges the packages; this catches mistakes in seconds)."""

import configparser
import os
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEBIAN = os.path.join(ROOT, 'debian')


def read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def packages(control: str) -> list[str]:
    return re.findall(r'^Package: (\S+)$', read(control), re.M)


MAINTAINER_SCRIPTS = sorted(name for name in os.listdir(DEBIAN)
                            if name.rsplit('.', 1)[-1] in ('postinst', 'postrm', 'preinst',
                                                           'prerm'))


def test_the_package_split():
    assert packages('debian/control') == [
        'python3-gridcentric-storage', 'gridcentric-storage-common', 'gridcentric-storage-api',
        'gridcentric-storage-compute', 'gridcentric-storage-client',
        'python3-gridcentric-storage-nova']
    assert packages('tools/debian-qemu-qmp/debian/control') == ['python3-qemu.qmp']


@pytest.mark.parametrize('package', packages('debian/control'))
def test_every_package_installs_files_that_exist(package):
    entries = [line.split() for line in read('debian', package + '.install').splitlines()
               if line.strip()]
    assert entries
    for entry in entries:
        # usr/... comes from the pybuild install in debian/tmp; the rest from the tree
        if not entry[0].startswith('usr/'):
            assert os.path.exists(os.path.join(ROOT, entry[0])), entry


def _relations(control: str, fields: tuple[str, ...]) -> set[str]:
    """Package names in the given fields of the binary stanzas (no substvars)."""
    names: set[str] = set()
    for stanza in read(control).split('\n\n')[1:]:
        for field in re.findall(r'^(\S+):((?:\n? .*)*)', stanza, re.M):
            if field[0] in fields:
                names |= set(re.findall(r'(?:^|[,|]\s*)([a-z0-9][a-z0-9.+-]+)', field[1].strip()))
    return names


def test_depends_only_on_debian_12_packages_and_our_qemu_qmp():
    apt_cache = shutil.which('apt-cache')
    if apt_cache is None:
        pytest.skip('apt-cache is not installed (not a Debian machine)')
    # dh_python3 writes the python3-* runtime from requirements.txt; it maps
    # qemu.qmp, which Debian lacks, to the package tools/debian-qemu-qmp builds
    assert read('debian', 'py3dist-overrides').startswith('qemu.qmp python3-qemu.qmp;')
    names = _relations('debian/control', ('Depends', 'Recommends', 'Suggests'))
    outside = sorted(names - set(packages('debian/control')) - {'qemu-system'})
    assert 'python3-qemu.qmp' not in outside  # it comes from dh_python3 only
    result = subprocess.run([apt_cache, 'policy', *outside], capture_output=True, text=True,
                            timeout=60, check=False)
    candidates = dict(re.findall(r'^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)',
                                 result.stdout, re.M))
    missing = [name for name in outside if candidates.get(name, '(none)') == '(none)']
    assert missing == []


@pytest.mark.parametrize('script', MAINTAINER_SCRIPTS)
def test_maintainer_script_is_valid_sh_with_debhelper_snippets(script):
    text = read('debian', script)
    assert text.startswith('#!/bin/sh\nset -e\n')
    assert '#DEBHELPER#' in text
    result = subprocess.run(['sh', '-n', os.path.join(DEBIAN, script)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


def _expand(text: str) -> str:
    """The script with its VAR=value assignments substituted."""
    values = dict(re.findall(r'^(\w+)=(\S+)$', text, re.M))
    return re.sub(r'"?\$\{?(\w+)\}?"?', lambda m: values.get(m.group(1), m.group(0)), text)


def test_purge_removes_what_postinst_made():
    postinst = _expand(read('debian', 'gridcentric-storage-common.postinst'))
    postrm = _expand(read('debian', 'gridcentric-storage-common.postrm'))
    made = set(re.findall(r'install -d [^\n]*?(/[\w/.-]+)\s*$', postinst, re.M))
    assert made == {'/var/lib/gridcentric-storage', '/var/log/gridcentric-storage',
                    '/etc/gridcentric-storage'}
    purge = postrm[postrm.index('"purge"'):]
    removed = set(re.findall(r'(/[\w/.-]+)', purge.split('rm -rf', 1)[1].split('\n    if')[0]))
    assert made <= removed
    assert 'adduser --quiet --system' in postinst and 'deluser --quiet --system' in purge
    assert 'addgroup --quiet --system' in postinst and 'delgroup --quiet --system' in purge


def _sudo_rule() -> tuple[str, re.Pattern[str]]:
    """The program and the argument regex the gridcentric user may run as root."""
    sudoers = read('debian', 'sudoers', 'gridcentric-storage-common')
    rule = re.search(r'^gridcentric ALL = \(root\) NOPASSWD: (\S+) (\^.*\$)$', sudoers, re.M)
    assert rule is not None
    return rule.group(1), re.compile(rule.group(2))


def test_sudoers_file_parses():
    visudo = shutil.which('visudo') or ('/usr/sbin/visudo' if os.path.exists('/usr/sbin/visudo')
                                        else None)
    if visudo is None:
        pytest.skip('visudo is not installed (apt-get install sudo)')
    result = subprocess.run([visudo, '-c', '-f',
                             os.path.join(DEBIAN, 'sudoers', 'gridcentric-storage-common')],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sudo_lets_through_exactly_os_bricks_privsep_daemon():
    """The helper_command the shipped config gives oslo.privsep, with the two
    arguments oslo.privsep appends, is what sudoers allows; another privsep
    context (root for any installed module) or an extra argument is not.
    sudo matches the arguments as one string against the rule's regex."""
    program, args = _sudo_rule()
    config = configparser.RawConfigParser()
    config.read(os.path.join(DEBIAN, 'gridcentric-storage.conf'))
    helper = shlex.split(config.get('privsep_osbrick', 'helper_command'))
    assert helper[:2] == ['sudo', program]
    command = helper[2:] + ['--privsep_context', 'os_brick.privileged.default',
                            '--privsep_sock_path', '/tmp/tmpa1_b2c3/privsep.sock']
    assert args.fullmatch(' '.join(command))
    other_context = [a.replace('os_brick', 'nova') for a in command]
    smuggled = command[:-1] + ['/tmp/x/privsep.sock --privsep_context nova.privsep.sys_admin_pctxt '
                               '--privsep_sock_path /tmp/y/privsep.sock']
    other_config = [a.replace('/etc/gridcentric-storage/', '/tmp/') for a in command]
    for refused in (other_context, smuggled, other_config):
        assert not args.fullmatch(' '.join(refused)), refused


@pytest.mark.parametrize('package', packages('debian/control'))
def test_every_program_has_a_manual_page(package):
    programs = {os.path.basename(e.split()[0]) for e in read('debian', package + '.install')
                .splitlines() if e.startswith('usr/bin/') or e.endswith(' usr/bin/')}
    listed = os.path.join(DEBIAN, package + '.manpages')
    pages = read('debian', package + '.manpages').split() if os.path.exists(listed) else []
    assert {os.path.basename(p)[:-len('.1')] for p in pages} == programs
    for page in pages:
        text = read(page)
        assert text.startswith(('.TH ', '.so man1/')), page


def test_the_library_does_not_import_what_the_nova_plugin_package_ships():
    """debian/rules moves these modules out of python3-gridcentric-storage: the
    services, installed without the plugin, must never import them."""
    import ast

    plugin = re.search(r'^NOVA_PLUGIN := (.*)$', read('debian', 'rules'), re.M)
    assert plugin is not None
    shipped = {'gridcentric_storage.nova.' + name.removesuffix('.py')
               for name in plugin.group(1).split()}
    assert shipped == {'gridcentric_storage.nova.' + m for m in (
        'api_filter', 'scheduler_filter', 'virt_alias', 'virt')}
    package = os.path.join(ROOT, 'gridcentric_storage')
    offenders = []
    for directory, _, files in os.walk(package):
        for name in files:
            path = os.path.join(directory, name)
            module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
            if not name.endswith('.py') or any(
                    module == s or module.startswith(s + '.') for s in shipped):
                continue
            for node in ast.walk(ast.parse(read(path))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + ['%s.%s' % (node.module, a.name)
                                             for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                offenders += ['%s imports %s' % (module, n) for n in names
                              if any(n == s or n.startswith(s + '.') for s in shipped)]
    assert offenders == []
