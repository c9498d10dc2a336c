"""`mount.alluxio-s3 SOURCE MOUNTPOINT [-o OPTIONS]`: the mount(8)/fstab helper. Argument parsing only."""

from __future__ import annotations

import argparse
import os
import sys

from s3fuse import cli, config, daemon
from s3fuse.hide import hide_secrets_from_ps

# Options mount(8) or fstab may pass that mean nothing to a FUSE daemon.
IGNORED = frozenset({
    "defaults", "_netdev", "nofail", "auto", "noauto", "user", "nouser", "users", "owner", "group", "exec",
    "noexec", "suid", "nosuid", "dev", "nodev", "async", "sync", "atime", "noatime", "relatime", "rw",
    "nodiratime", "diratime", "loud", "silent", "nosymfollow",
})


def split_options(text: str) -> tuple[list[str], set[str]]:
    """-o text -> (properties as key=value, flags)."""
    properties: list[str] = []
    flags: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" in item and not item.startswith("x-") and not item.startswith("comment="):
            properties.append(item)
        elif not item.startswith("x-") and item not in IGNORED:
            flags.add(item)
    return properties, flags


def main(argv: list[str] | None = None) -> int:
    hide_secrets_from_ps()
    parser = argparse.ArgumentParser(prog="mount.alluxio-s3", description="mount(8) helper for s3fuse")
    parser.add_argument("source", help="s3://BUCKET/DIR")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[], help="comma-separated options")
    parser.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("-s", "-n", "-v", dest="ignored", action="store_true", help="accepted and ignored")
    parser.add_argument("-t", dest="type", help="accepted and ignored")
    parser.add_argument("--conf", help="configuration directory")
    args = parser.parse_args(argv)

    properties: list[str] = []
    flags: set[str] = set()
    for text in args.options:
        more, more_flags = split_options(text)
        properties += more
        flags |= more_flags
    readonly = bool(flags & {"ro", "readonly"})
    shared = "shared" in flags
    allow_other = "allow_other" in flags
    debug = "debug" in flags
    direct_io = "direct_io" in flags
    unknown = flags - {"ro", "readonly", "shared", "allow_other", "debug", "foreground", "direct_io"}
    if unknown:
        print(f"mount.alluxio-s3: unknown option(s) {', '.join(sorted(unknown))}; properties are key=value",
              file=sys.stderr)
        return 2
    cli.setup_logging(config.conf_dir(args.conf), verbose=debug)
    try:
        configuration = config.load(args.conf, (), properties, readonly=readonly or None, shared=shared or None,
                                    direct_io=direct_io or None, root_ufs=args.source)
    except config.ConfigError as exc:
        print(f"mount.alluxio-s3: configuration error: {exc}", file=sys.stderr)
        return 2
    request = daemon.MountRequest(configuration, os.path.abspath(args.mountpoint), allow_other=allow_other)
    if args.foreground or "foreground" in flags:
        return daemon.run(request, lambda error: (error is not None and print(error, file=sys.stderr)) or None)
    return daemon.daemonize(request, cli.default_log_file(args.mountpoint))


if __name__ == "__main__":
    sys.exit(main())
