"""The demo behind scripts/demo: a local S3 (moto) on loopback, a bucket of sample files, a real s3fuse mount
made the way mount(8) makes it, and a check of every sample file through the mount against S3."""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s3fuse.embedded import SAMPLE_FILES, clean_aws_environment, moto_server, seed

BIN = Path(sys.executable).parent
BUCKET = "s3fuse-demo"


def compare_with_s3(mountpoint: Path) -> int:
    """List, stat and read every sample file through the mount and compare with what was put into S3."""
    failures = 0
    for key, body in SAMPLE_FILES.items():
        path = mountpoint / key
        if key.endswith("/"):
            ok = path.is_dir() and not os.listdir(path)
        else:
            data = path.read_bytes()
            ok = path.stat().st_size == len(body) and hashlib.sha256(data).digest() == hashlib.sha256(body).digest()
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {key} ({len(body)} bytes)")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hold", action="store_true", default=sys.stdin.isatty(),
                        help="keep the mount up until Ctrl-C (default when run from a terminal)")
    parser.add_argument("--no-hold", dest="hold", action="store_false", help="stop right after the check")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="s3fuse-demo-"))
    mountpoint = work / "mnt"
    mountpoint.mkdir()
    env = clean_aws_environment({"S3FUSE_LOG_DIR": str(work), "S3FUSE_CONF_DIR": str(work / "conf")})
    with moto_server(log_path=str(work / "s3.log")) as s3:
        seed(s3, BUCKET)
        print(f"local S3 at {s3.endpoint}, bucket {BUCKET} with {len(SAMPLE_FILES)} sample entries")
        options = ",".join([*s3.mount_options(), f"alluxio.user.client.cache.dirs={work / 'cache'}",
                            f"alluxio.tmp.dirs={work / 'staging'}"])
        command = [str(BIN / "mount.alluxio-s3"), f"s3://{BUCKET}/", str(mountpoint), "-o", options]
        print(f"$ mount.alluxio-s3 s3://{BUCKET}/ {mountpoint} -o alluxio.underfs.s3.endpoint={s3.endpoint},...")
        started = time.monotonic()
        if subprocess.run(command, env=env).returncode != 0:
            print(f"mount failed; see {work}", file=sys.stderr)
            return 1
        print(f"mounted in {time.monotonic() - started:.1f}s")
        try:
            print("checking every sample file through the mount against S3:")
            failures = compare_with_s3(mountpoint)
            print("$ s3fuse runTests", mountpoint)
            failures += subprocess.run([str(BIN / "s3fuse"), "runTests", str(mountpoint)], env=env).returncode
            print("\nself-check", "PASSED" if not failures else f"FAILED ({failures})")
            print(f"\nTry it:\n  ls -l {mountpoint}/data\n  cat {mountpoint}/README.txt\n"
                  f"  find {mountpoint} -type f | head\n"
                  f"Unmount with: fusermount3 -u {mountpoint}   (or press Ctrl-C here)\n"
                  f"Daemon log: {work}/")
            if args.hold and not failures:
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                try:
                    while os.path.ismount(mountpoint):
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
            return 1 if failures else 0
        finally:
            if os.path.ismount(mountpoint):
                subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
            for _ in range(100):  # the daemon exits once unmounted; do not leave it behind
                if subprocess.run(["pgrep", "-f", f"mount.alluxio-s3 s3://{BUCKET}/ {mountpoint}"],
                                  capture_output=True).returncode != 0:
                    break
                time.sleep(0.1)
            print("unmounted, local S3 stopped")


if __name__ == "__main__":
    sys.exit(main())
