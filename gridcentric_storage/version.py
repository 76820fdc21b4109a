"""Package version, from pbr metadata when installed."""

try:
    from pbr import version as _pbr_version

    version_string = _pbr_version.VersionInfo('gridcentric-storage').version_string()
except Exception:  # running from a source tree that pbr cannot describe
    version_string = '0.0.0.dev0'
