"""The direct client: aiobotocore straight at the server, for seeding and for the limits the mount is judged by.

Every baseline is the S3 work a FUSE layer would have to do for the same workload, done by a client with no
file-system overhead, on the same server and through the same counting proxy as the mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from common import (
    BIG_KEY,
    BUCKET,
    DIRECT,
    LS_PREFIX,
    REN_PREFIX,
    SMALL_PREFIX,
    TREE_PREFIX,
    MiB,
    Sizes,
    busy_cpu_seconds,
    cpu_per_gib,
    mib_chunk,
)

Client = Any  # aiobotocore's S3 client is generated at run time: no static type to name
SEED_PART = 64 * MiB


@contextlib.asynccontextmanager
async def open_client(endpoint: str, access_key: str, secret_key: str, region: str,
                      connections: int = 32) -> AsyncIterator[Client]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(s3={"addressing_style": "path"}, max_pool_connections=connections,
                       retries={"max_attempts": 3}, connect_timeout=10, read_timeout=300,
                       request_checksum_calculation="when_required", response_checksum_validation="when_required")
    async with get_session().create_client("s3", endpoint_url=endpoint, region_name=region,
                                           aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                           config=config) as client:
        yield client


async def bounded(jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    """Run the jobs with at most `concurrency` in flight (keeps seeding memory and sockets bounded)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))


async def read_body(response: dict[str, Any], md5: Any = None) -> int:
    total = 0
    async with response["Body"] as body:
        while chunk := await body.read(MiB):
            total += len(chunk)
            if md5 is not None:
                md5.update(chunk)
    return total


async def put_many(client: Client, items: list[tuple[str, bytes]], concurrency: int = 16) -> None:
    def job(key: str, body: bytes) -> Callable[[], Awaitable[Any]]:
        return lambda: client.put_object(Bucket=BUCKET, Key=key, Body=body)
    await bounded((job(key, body) for key, body in items), concurrency)


async def multipart_put(client: Client, key: str, part_size: int, parts: int,
                        part_bytes: Callable[[int], bytes], concurrency: int) -> None:
    upload = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
    upload_id = upload["UploadId"]

    def job(number: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def put() -> dict[str, Any]:
            answer = await client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number + 1,
                                              Body=part_bytes(number))
            return {"PartNumber": number + 1, "ETag": answer["ETag"]}
        return put

    try:
        done = await bounded((job(number) for number in range(parts)), concurrency)
    except BaseException:
        await client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        raise
    await client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                           MultipartUpload={"Parts": done})


def big_part(number: int, part_size: int = SEED_PART) -> bytes:
    first = number * part_size // MiB
    return b"".join(mib_chunk(first + index) for index in range(part_size // MiB))


async def seed(client: Client, sizes: Sizes) -> None:
    """The read-only data set: the big object (multipart, 64 MiB parts generated on the fly), the ls, tree and
    small-file sets."""
    with contextlib.suppress(Exception):  # an existing bucket (RGW reruns) is fine
        await client.create_bucket(Bucket=BUCKET)
    if sizes.big_mib * MiB <= SEED_PART:
        await client.put_object(Bucket=BUCKET, Key=BIG_KEY, Body=big_part(0, sizes.big_mib * MiB))
    else:
        parts = -(-sizes.big_mib * MiB // SEED_PART)
        await multipart_put(client, BIG_KEY, SEED_PART, parts,
                            lambda n: big_part(n, min(SEED_PART, sizes.big_mib * MiB - n * SEED_PART)), 2)
    await put_many(client, [(f"{LS_PREFIX}f{index:04d}", b"l" * 100) for index in range(sizes.n_ls)])
    await put_many(client, [(f"{TREE_PREFIX}d{d:03d}/f{f}", b"t" * 10)
                            for d in range(sizes.n_dirs) for f in range(sizes.n_per_dir)])
    await put_many(client, [(f"{SMALL_PREFIX}s{index:04d}", bytes([index % 251]) * 4096)
                            for index in range(sizes.n_small)])


async def seed_rename(client: Client, prefix: str, count: int) -> None:
    await delete_prefix(client, prefix)
    await put_many(client, [(f"{prefix}src/f{index:03d}", b"r" * 100) for index in range(count)])


async def list_keys(client: Client, prefix: str, delimiter: str = "") -> list[str]:
    keys: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    kwargs = {"Bucket": BUCKET, "Prefix": prefix} | ({"Delimiter": delimiter} if delimiter else {})
    async for page in paginator.paginate(**kwargs):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


async def delete_prefix(client: Client, prefix: str) -> None:
    keys = await list_keys(client, prefix)
    for start in range(0, len(keys), 1000):
        await client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})


async def verify_written(client: Client, key: str, write_mib: int) -> str:
    """"ok" when the object the mount wrote has the bytes fsload.write wrote, else what is wrong."""
    want = hashlib.md5()
    for index in range(write_mib):
        want.update(mib_chunk(index % 16))
    try:
        got = hashlib.md5()
        size = await read_body(await client.get_object(Bucket=BUCKET, Key=key), got)
    except Exception as exc:
        return f"not in the bucket ({type(exc).__name__})"
    if size != write_mib * MiB:
        return f"size {size}, expected {write_mib * MiB}"
    return "ok" if got.hexdigest() == want.hexdigest() else "content differs"


# ------------------------------------------------------------------------------------------------ baselines
# Each returns (value, unit, extra); the harness snapshots the proxy's counts around each call.

Result = tuple[float, str, dict[str, Any]]


async def get_single(client: Client, sizes: Sizes) -> Result:
    start = time.perf_counter()
    total = await read_body(await client.get_object(Bucket=BUCKET, Key=BIG_KEY))
    return total / 1e6 / (time.perf_counter() - start), "MB/s", {}


async def get_range(client: Client, offset: int, length: int) -> int:
    return await read_body(await client.get_object(Bucket=BUCKET, Key=BIG_KEY,
                                                   Range=f"bytes={offset}-{offset + length - 1}"))


async def ranged_burst(client: Client, sizes: Sizes) -> Result:
    """8 concurrent 8 MiB ranged GETs, best of 3: the most a block-fetching reader can get from this server."""
    best = 0.0
    count = min(8, sizes.big_mib // 8)
    for attempt in range(3):
        base = attempt * count * 8 * MiB % (sizes.big_mib * MiB)
        offsets = [(base + n * 8 * MiB) % (sizes.big_mib * MiB - 8 * MiB + 1) for n in range(count)]
        start = time.perf_counter()
        total = sum(await asyncio.gather(*(get_range(client, offset, 8 * MiB) for offset in offsets)))
        best = max(best, total / 1e6 / (time.perf_counter() - start))
    return best, "MB/s", {}


async def ranged_whole(client: Client, sizes: Sizes) -> Result:
    """The whole object as 8 MiB ranges, 8 in flight: what a perfect prefetcher with 8 MiB blocks would do."""
    size = sizes.big_mib * MiB
    offsets = range(0, size, 8 * MiB)
    busy = busy_cpu_seconds()
    start = time.perf_counter()
    total = sum(await bounded((lambda o=o: get_range(client, o, min(8 * MiB, size - o)) for o in offsets), 8))
    elapsed = time.perf_counter() - start
    return total / 1e6 / elapsed, "MB/s", {"cpu_s_per_gib": cpu_per_gib(busy_cpu_seconds() - busy, total)}


async def rand4k(client: Client, sizes: Sizes) -> Result:
    import random

    rng = random.Random(5)
    blocks = sizes.big_mib * MiB // 4096
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < sizes.rand_secs:
        await get_range(client, rng.randrange(blocks) * 4096, 4096)
        done += 1
    return done / (time.perf_counter() - start), "ops/s", {}


async def list_ls(client: Client, sizes: Sizes) -> Result:
    start = time.perf_counter()
    keys = await list_keys(client, LS_PREFIX, "/")
    return time.perf_counter() - start, "s", {"keys": len(keys)}


async def list_tree(client: Client, sizes: Sizes) -> Result:
    start = time.perf_counter()
    keys = await list_keys(client, TREE_PREFIX)
    return time.perf_counter() - start, "s", {"keys": len(keys)}


async def small_put(client: Client, sizes: Sizes) -> Result:
    payload = b"p" * 4096
    start = time.perf_counter()
    for index in range(sizes.n_small):
        await client.put_object(Bucket=BUCKET, Key=f"{DIRECT}small/s{index:04d}", Body=payload)
    return sizes.n_small / (time.perf_counter() - start), "files/s", {}


async def small_get(client: Client, sizes: Sizes) -> Result:
    start = time.perf_counter()
    for index in range(sizes.n_small):
        await read_body(await client.get_object(Bucket=BUCKET, Key=f"{SMALL_PREFIX}s{index:04d}"))
    return sizes.n_small / (time.perf_counter() - start), "files/s", {}


async def small_get_back(client: Client, sizes: Sizes) -> Result:
    """GET back what small_put wrote."""
    start = time.perf_counter()
    for index in range(sizes.n_small):
        await read_body(await client.get_object(Bucket=BUCKET, Key=f"{DIRECT}small/s{index:04d}"))
    return sizes.n_small / (time.perf_counter() - start), "files/s", {}


def written_bytes(sizes: Sizes) -> bytes:
    return b"".join(mib_chunk(index % 16) for index in range(sizes.write_mib))


async def put_single(client: Client, sizes: Sizes) -> Result:
    body = written_bytes(sizes)
    start = time.perf_counter()
    await client.put_object(Bucket=BUCKET, Key=f"{DIRECT}put-single", Body=body)
    elapsed = time.perf_counter() - start
    await client.delete_object(Bucket=BUCKET, Key=f"{DIRECT}put-single")
    return len(body) / 1e6 / elapsed, "MB/s", {}


async def put_multipart(client: Client, sizes: Sizes) -> Result:
    body = memoryview(written_bytes(sizes))
    parts = -(-len(body) // (8 * MiB))
    start = time.perf_counter()
    await multipart_put(client, f"{DIRECT}put-multipart", 8 * MiB, parts,
                        lambda n: bytes(body[n * 8 * MiB:(n + 1) * 8 * MiB]), 8)
    elapsed = time.perf_counter() - start
    await client.delete_object(Bucket=BUCKET, Key=f"{DIRECT}put-multipart")
    return len(body) / 1e6 / elapsed, "MB/s", {}


async def rename_dir(client: Client, sizes: Sizes) -> Result:
    """What a FUSE rename(2) of a directory must do on S3: list, CopyObject each key (16 in flight),
    DeleteObjects the sources."""
    prefix = f"{DIRECT}{REN_PREFIX}"
    start = time.perf_counter()
    keys = await list_keys(client, f"{prefix}src/")

    def copy(key: str) -> Callable[[], Awaitable[Any]]:
        return lambda: client.copy_object(Bucket=BUCKET, Key=key.replace("/src/", "/dst/", 1),
                                          CopySource={"Bucket": BUCKET, "Key": key})
    await bounded((copy(key) for key in keys), 16)
    for first in range(0, len(keys), 1000):
        await client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[first:first + 1000]]})
    return time.perf_counter() - start, "s", {"keys": len(keys)}
