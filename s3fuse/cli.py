"""`s3fuse`: argument parsing only; every command builds a Config and calls into the layers."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.config
import os
import re
import sys
import time
from pathlib import Path

import trio
import trio_asyncio

from s3fuse import config as configuration
from s3fuse import control, daemon, selfcheck
from s3fuse.hide import SafeFormatter, hide_secrets_from_ps
from s3fuse.s3.client import S3Client
from s3fuse.upload import recovery
from s3fuse.upload.staged import upload_file
from s3fuse.web import server

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(conf_dir: Path | None, verbose: bool) -> None:
    """`logging.conf` in the configuration directory wins (the counterpart of Alluxio's log4j.properties)."""
    logging_conf = conf_dir / "logging.conf" if conf_dir else None
    if logging_conf is not None and logging_conf.is_file():
        logging.config.fileConfig(logging_conf, disable_existing_loggers=False)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("botocore", "aiobotocore", "urllib3", "asyncio", "trio_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # request-level logs: conf/logging.conf.example


def default_log_file(mountpoint: str) -> str:
    directory = Path(os.environ.get("S3FUSE_LOG_DIR", "/var/log/s3fuse"))
    directory.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.abspath(mountpoint).strip("/")) or "root"
    return str(directory / f"{name}.log")


def add_config_arguments(parser: argparse.ArgumentParser, mount_flags: bool = True) -> None:
    parser.add_argument("--conf", help="directory holding alluxio-site.properties (else $S3FUSE_CONF_DIR, "
                                       "else /etc/s3fuse)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a mount option or property; highest precedence")
    parser.add_argument("-D", dest="defines", action="append", default=[], metavar="KEY=VALUE",
                        help="a property, above the site file and below --option")
    if mount_flags:
        parser.add_argument("--readonly", action="store_true", help="mount read-only")
        parser.add_argument("--shared", action="store_true", help="every user gets rwx (mode 0777)")


def build_config(args: argparse.Namespace, source: str | None) -> configuration.Config:
    overrides: dict[str, object] = {}
    if getattr(args, "readonly", False):
        overrides["readonly"] = True
    if getattr(args, "shared", False):
        overrides["shared"] = True
    if source:
        configuration.split_ufs(source)
        overrides["root_ufs"] = source
    config = configuration.load(args.conf, args.defines, args.option, **overrides)
    if not config.root_ufs:
        raise configuration.ConfigError("nothing to mount: give s3://BUCKET/DIR on the command line or set "
                                        "alluxio.master.mount.table.root.ufs")
    return config


def mount_command(args: argparse.Namespace) -> int:
    config = build_config(args, args.source)
    request = daemon.MountRequest(config, os.path.abspath(args.mountpoint), allow_other=args.allow_other,
                                  debug_fuse=args.debug_fuse)
    if args.foreground:
        def notify(error: str | None) -> None:
            if error is not None:
                print(f"s3fuse: {error}", file=sys.stderr)
        return daemon.run(request, notify)
    return daemon.daemonize(request, args.log_file or default_log_file(args.mountpoint))


def cleanup_command(args: argparse.Namespace) -> int:
    """Abort stale multipart uploads under s3://BUCKET/DIR once; a daemon's uploads in flight are kept."""
    config = build_config(args, args.source)
    uploads = server.fetch_uploads(config.web_bind_host, config.web_port)
    if uploads is None:
        print(f"s3fuse cleanup: no s3fuse daemon answered on {config.web_bind_host}:{config.web_port}; the uploads "
              "of a daemon elsewhere are protected only by the clean age", file=sys.stderr)
    protected = {str(u.get("upload_id")) for u in uploads or []}
    try:
        aborted = daemon.cleanup_once(config, protected)
    except BaseException as exc:
        error = daemon.startup_error(exc)
        if error is None:
            raise
        print(f"s3fuse cleanup: {error}", file=sys.stderr)
        return 1
    for item in aborted:
        print(f"aborted s3://{item.bucket}/{item.key} (upload {item.upload_id}, initiated "
              f"{item.initiated.isoformat(timespec='seconds')})")
    print(f"{len(aborted)} stale multipart upload(s) aborted under {config.root_ufs} (older than "
          f"{config.clean_age:g} s{f'; {len(protected)} in flight kept' if protected else ''})")
    return 0


def format_command(args: argparse.Namespace) -> int:
    config = configuration.load(args.conf, args.defines, args.option)

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print(f"{question}\ns3fuse format: not a terminal: add --yes to confirm", file=sys.stderr)
            return False
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    return selfcheck.format_cache(config.cache_dirs, confirm)


def unmount_command(args: argparse.Namespace) -> int:
    return daemon.stop(os.path.abspath(args.mountpoint), args.pid, args.timeout)


def fs_mount_command(args: argparse.Namespace) -> int:
    """`s3fuse fs mount`: with no path, the mount table of every running daemon; else graft SOURCE at PATH."""
    if args.path is None:
        for point in control.running_mountpoints():
            for row in control.call(point, {"op": "list"}).get("mounts", []):
                flags = ",".join(f for f in ("readonly", "shared") if row.get(f)) or "-"
                print(f"{row['uri']:40} on {os.path.join(point, row['path'].lstrip('/')).rstrip('/') or '/':40} "
                      f"({flags}, {row['endpoint']})")
        return 0
    if args.source is None:
        raise configuration.ConfigError("give the S3 URI to mount: s3fuse fs mount PATH s3://BUCKET/DIR")
    build_config(args, args.source)  # a malformed property fails here, in the caller's terminal
    point, relative = control.owning_mount(args.path)
    conf = configuration.conf_dir(args.conf)
    site = conf / configuration.SITE_FILE if conf else None
    reply = control.call(point, {"op": "mount", "path": relative, "uri": args.source, "options": args.option,
                                 "conf": str(conf) if site and site.is_file() else None, "readonly": args.readonly,
                                 "shared": args.shared})
    return report(reply, f"mounted {args.source} at {args.path}")


def fs_unmount_command(args: argparse.Namespace) -> int:
    point, relative = control.owning_mount(args.path)
    return report(control.call(point, {"op": "unmount", "path": relative}), f"unmounted {args.path}")


def recover_command(args: argparse.Namespace) -> int:
    """List what the recovery folder keeps; with --upload, put each file back under its key."""
    config = configuration.load(args.conf, args.defines, args.option)
    directory = recovery.folder(config.tmp_dirs[0])
    items = list(recovery.kept(directory))
    if not items:
        print(f"nothing kept in {directory}")
        return 0
    for item in items:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item.kept_at))
        print(f"{when}  {item.size:>12}  s3://{item.bucket}/{item.key}  <- {item.path}")
    if not args.upload:
        print(f"{len(items)} file(s); upload them with: s3fuse recover --upload (same --option/--conf as the mount)")
        return 0
    failed = trio.run(upload_kept, config, items)
    print(f"{len(items) - failed} uploaded, {failed} failed (kept)")
    return 1 if failed else 0


async def upload_kept(config: configuration.Config, items: list[recovery.Kept]) -> int:
    failed = 0
    async with trio_asyncio.open_loop():
        for item in items:
            bucket_config = dataclasses.replace(config, root_ufs=f"s3://{item.bucket}/")
            client = S3Client(bucket_config, item.bucket)
            await client.open()
            try:
                await upload_file(client, item.key, item.path, item.size, threshold=config.multipart_threshold,
                                  part_size=config.partition_size)
                recovery.forget(item)
                print(f"uploaded s3://{item.bucket}/{item.key}")
            except OSError as exc:
                failed += 1
                print(f"s3fuse: s3://{item.bucket}/{item.key}: {exc}", file=sys.stderr)
            finally:
                await client.close()
    return failed


def report(reply: dict[str, object], success: str) -> int:
    if "error" in reply:
        print(f"s3fuse: {reply['error']}", file=sys.stderr)
        return 1
    print(success)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="s3fuse", description="Mount S3 as a POSIX filesystem (Alluxio-style "
                                                              "configuration).")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = top.add_subparsers(dest="command", required=True)

    mount = commands.add_parser("mount", help="mount a bucket or prefix")
    add_config_arguments(mount)
    mount.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    mount.add_argument("--allow-other", action="store_true", help="let other users enter the mount")
    mount.add_argument("--log-file", help="daemon log (default /var/log/s3fuse/<mount point>.log)")
    mount.add_argument("--debug-fuse", action="store_true", help="libfuse request tracing")
    mount.add_argument("mountpoint")
    mount.add_argument("source", nargs="?", help="s3://BUCKET/DIR (else alluxio.master.mount.table.root.ufs)")
    mount.set_defaults(run=mount_command)

    check = commands.add_parser("runTests", help="write, read back and verify files through a mount")
    check.add_argument("mountpoint")
    check.set_defaults(run=lambda args: selfcheck.run_tests(args.mountpoint))

    unmount = commands.add_parser("unmount", aliases=["umount"], help="stop a mount cleanly: no new changes, "
                                  "finish uploads in flight, unmount; returns when the daemon has exited")
    unmount.add_argument("--pid", type=int, help="the daemon's process id (systemd: $MAINPID); else it is looked "
                                                 "up by mount point")
    unmount.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the daemon (300)")
    unmount.add_argument("mountpoint")
    unmount.set_defaults(run=unmount_command)

    cleanup = commands.add_parser("cleanup", help="abort stale multipart uploads (older than "
                                  "alluxio.underfs.s3.intermediate.upload.clean.age) under s3://BUCKET/DIR")
    add_config_arguments(cleanup, mount_flags=False)
    cleanup.add_argument("source", nargs="?", help="s3://BUCKET/DIR (else alluxio.master.mount.table.root.ufs)")
    cleanup.set_defaults(run=cleanup_command)

    fmt = commands.add_parser("format", help="empty the local block cache and metadata overlay (after "
                              "confirmation)")
    add_config_arguments(fmt, mount_flags=False)
    fmt.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    fmt.set_defaults(run=format_command)

    fs = commands.add_parser("fs", help="nested mounts inside a running mount (Alluxio's unified namespace)")
    fs_commands = fs.add_subparsers(dest="fs_command", required=True)
    fs_mount = fs_commands.add_parser("mount", help="graft s3://BUCKET/DIR at PATH inside a running mount; with "
                                      "no arguments, list the mount table of every running daemon")
    add_config_arguments(fs_mount)
    fs_mount.add_argument("path", nargs="?", help="a new path inside a running s3fuse mount")
    fs_mount.add_argument("source", nargs="?", help="s3://BUCKET/DIR")
    fs_mount.set_defaults(run=fs_mount_command)
    fs_unmount = fs_commands.add_parser("unmount", aliases=["umount"], help="remove a nested mount")
    fs_unmount.add_argument("path")
    fs_unmount.set_defaults(run=fs_unmount_command)

    recover = commands.add_parser("recover", help="list (and with --upload, upload) files whose upload failed, "
                                  "kept in the recovery folder under alluxio.tmp.dirs")
    add_config_arguments(recover, mount_flags=False)
    recover.add_argument("--upload", action="store_true", help="upload each kept file to its key, then drop it")
    recover.set_defaults(run=recover_command)

    template = commands.add_parser("template", help="print conf/alluxio-site.properties.template")
    template.set_defaults(run=lambda args: print(configuration.template(), end="") or 0)
    return top


def main(argv: list[str] | None = None) -> int:
    hide_secrets_from_ps()
    args = parser().parse_args(argv)
    conf = getattr(args, "conf", None)
    setup_logging(configuration.conf_dir(conf), args.verbose)
    try:
        status: int = args.run(args)
        return status
    except configuration.ConfigError as exc:
        print(f"s3fuse: configuration error: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, FileNotFoundError) as exc:
        print(f"s3fuse: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
