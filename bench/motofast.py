"""moto's S3 server with its object storage patched so a ranged GET costs O(range), not O(object).

Why: stock moto 5.x keeps each object in a SpooledTemporaryFile and, on every GetObject, reads the whole file
back and copies it before slicing out the Range. A 4 KiB ranged GET of a 1 GiB object then moves 2 GiB of
memory, so every block-read workload would measure moto instead of the mount. (Idea from
../shared/bench/moto_fast.py; this version stores one immutable `bytes` per object instead of caching a copy
beside the spooled file, and lets multipart parts go once they are joined, so memory is ~1x the data.)

Known divergence, irrelevant here: GetObject?partNumber=N on a multipart object returns nothing useful.

    python bench/motofast.py -H 127.0.0.1 -p PORT      (the arguments of moto_server)
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_SLOT = "_bench_bytes"


def patch_moto() -> None:
    """Replace FakeKey.value/etag with versions backed by one bytes object, and drop joined parts."""
    from moto.s3 import models

    def get_value(self: Any) -> bytes:
        value: bytes = self.__dict__.get(_SLOT, b"")
        return value  # immutable: no defensive copy needed, a slice copies only the range

    def set_value(self: Any, new_value: bytes | bytearray | str) -> None:
        if isinstance(new_value, str):
            new_value = new_value.encode("utf-8")
        data = bytes(new_value)  # no copy when it is bytes already
        self.__dict__[_SLOT] = data
        self.contentsize = len(data)

    def get_etag(self: Any) -> str:
        if self._etag is None:
            self._etag = hashlib.md5(self.__dict__.get(_SLOT, b"")).hexdigest()
        return f'"{self._etag}"'

    models.FakeKey.value = property(get_value, set_value)
    models.FakeKey.etag = property(get_etag)

    original_complete = models.S3Backend.complete_multipart_upload

    def complete_multipart_upload(self: Any, *args: Any, **kwargs: Any) -> Any:
        key = original_complete(self, *args, **kwargs)
        if key is not None and key.multipart is not None:
            for part in key.multipart.parts.values():
                part.__dict__[_SLOT] = b""  # the joined object holds the bytes; sizes and ETags stay
        return key

    models.S3Backend.complete_multipart_upload = complete_multipart_upload


@contextlib.contextmanager
def fast_moto_server(port: int, log_path: str, started: Callable[[int], None] | None = None) -> Iterator[Any]:
    """This module as a server on 127.0.0.1:port, stopped when the block ends; yields an embedded.LocalS3."""
    from s3fuse.embedded import LocalS3, clean_aws_environment, stop, wait_for

    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=log, env=clean_aws_environment(), start_new_session=True)
        if started is not None:
            started(process.pid)
        try:
            wait_for(f"http://127.0.0.1:{port}/", 60, process)
            yield LocalS3(f"http://127.0.0.1:{port}", name="moto-fast")
        finally:
            stop(process)


def main(argv: list[str]) -> int:
    patch_moto()
    from moto.server import main as moto_main

    moto_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
