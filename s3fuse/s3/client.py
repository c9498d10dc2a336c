"""The one place that builds aiobotocore clients and crosses from trio to asyncio.

Every public method is awaited from trio and runs one whole request (body included) as a single asyncio
coroutine through `aio_as_trio`, so nothing above this module knows asyncio exists; the exceptions are
`get_range` (the block cache's bulk reads), `put` (a whole object in one request) and `upload_part`, whose
bodies travel on a worker thread (ranged.py) with a URL and signature botocore made. Failures leave here as
`S3Error` with an errno (see errors.py).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import mimetypes
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aiobotocore.session
import aiohttp
import botocore.auth
import botocore.awsrequest
import botocore.httpsession
import trio
import trio_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession

from s3fuse.config import SIGNERS, Config
from s3fuse.s3 import credentials, ranged
from s3fuse.s3.errors import S3Error, answer_error, no_answer, translate

log = logging.getLogger(__name__)


def guess_content_type(key: str) -> str:
    """The Content-Type of an object s3fuse writes without one: from its name, as s3fs-fuse does."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"

T = TypeVar("T")

MUTATING_OPERATIONS = frozenset({
    "PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CreateMultipartUpload", "UploadPart",
    "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload", "PutBucketAcl", "PutObjectAcl",
})


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a HEAD tells about one object."""

    key: str
    size: int
    etag: str
    mtime: datetime
    metadata: Mapping[str, str] | None = None  # only from HEAD/GET: listings carry no user metadata
    content_type: str = ""
    owner_id: str = ""


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectInfo]
    prefixes: list[str]
    next_token: str | None


# An attempt at a request that botocore does not send, for the metrics: (operation, result such as "2xx",
# seconds, body bytes, whether no retry follows)
RequestListener = Callable[[str, str, float, int, bool], None]
URL_PROBE_KEY = "s3fuse-url-probe"  # the key whose presigned URL shows how botocore builds object URLs
CREDENTIALS_REUSE = 10.0  # seconds; botocore refreshes expiring credentials minutes ahead, so this is safe
PAYLOAD_HASH = re.compile(r"[0-9a-f]{64}")  # a signed body's SHA-256, not UNSIGNED-PAYLOAD or a streaming mode
MAX_BACKOFF = 20.0  # botocore's standard retry mode: a random wait up to 2**attempt seconds, capped here
CONNECT_TIMEOUT = 10.0  # the AWS SDK for Java's connection timeout, which Alluxio does not change


def endpoint_url(config: Config) -> str | None:
    """`host:port` gets https when `alluxio.underfs.s3.secure.http.enabled` or SSE asks for it (as in Alluxio),
    else http; a URL is used as it is (config.py refuses an http:// URL with SSE)."""
    endpoint = config.endpoint.strip()
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    return f"{'https' if config.secure_http or config.sse else 'http'}://{endpoint}"


def total_threads(config: Config) -> int:
    """`threads.max` bounds all requests; like Alluxio it is raised to admin + upload threads when lower, so
    metadata and uploads can each use their whole share at once."""
    return max(config.threads, config.admin_threads + config.upload_threads, 1)


def session_class(request_timeout: float) -> type[Any]:
    """aiobotocore's HTTP session with a deadline on every attempt, answer body included: what the AWS SDK's
    request timeout (`alluxio.underfs.s3.request.timeout`) does; botocore itself only has socket timeouts."""

    class TimedSession(AIOHTTPSession):  # type: ignore[misc]  # aiobotocore has no type hints
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            socket_timeouts: aiohttp.ClientTimeout = getattr(self, "_timeout")  # noqa: B009 - untyped base
            self._timeout = aiohttp.ClientTimeout(total=request_timeout or None,
                                                  sock_connect=socket_timeouts.sock_connect,
                                                  sock_read=socket_timeouts.sock_read)

    return TimedSession


def client_config(config: Config) -> AioConfig:
    proxies = {}
    if config.proxy_host:
        proxy = f"http://{config.proxy_host}:{config.proxy_port or 80}"
        proxies = {"http": proxy, "https": proxy}
    socket_timeout = config.socket_timeout or None  # 0: no limit, as in the AWS SDK
    return AioConfig(
        region_name=config.region or "us-east-1",
        signature_version=SIGNERS[config.signer],
        s3={"addressing_style": "path" if config.path_style else "virtual"},
        connect_timeout=min(CONNECT_TIMEOUT, socket_timeout or CONNECT_TIMEOUT),
        read_timeout=socket_timeout,
        max_pool_connections=total_threads(config),
        retries={"max_attempts": config.max_error_retry + 1, "mode": "standard"},
        proxies=proxies or None,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        http_session_cls=session_class(config.request_timeout),
    )


def bucket_slash(bucket: str) -> Callable[..., None]:
    """SigV2 with path style: sign a bucket-level request as `/bucket/`, not `/bucket`. Both mean the bucket, but
    Ceph RGW (16) computes the string to sign with the slash and answers SignatureDoesNotMatch (or 403) to
    botocore's form; AWS and moto accept either."""
    bare = "/" + urllib.parse.quote(bucket)

    def handler(request: Any, **_: Any) -> None:
        parts = urllib.parse.urlsplit(request.url)
        if parts.path == bare and not hosts_bucket(parts, bucket):
            request.url = urllib.parse.urlunsplit(parts._replace(path=bare + "/"))

    return handler


def hosts_bucket(parts: urllib.parse.SplitResult, bucket: str) -> bool:
    """Whether a URL names the bucket in its host (virtual-host style) rather than in its path."""
    return (parts.hostname or "").startswith(f"{bucket}.")


def signed_headers(method: str, url: str, auth_path: str | None, signer: Any, headers: Mapping[str, str],
                   body: ranged.Body = b"") -> dict[str, str]:
    """`headers` with botocore's signature for the request (none for anonymous access), as botocore signs its
    own: SigV4 hashes the body over http, SigV2 uses `auth_path` for a virtual-host URL."""
    request = botocore.awsrequest.AWSRequest(method=method, url=url, headers=dict(headers), data=body or None)
    request.auth_path = auth_path
    # as botocore marks PutObject's and UploadPart's bodies: over https with Content-MD5 they go unsigned
    request.context["has_streaming_input"] = bool(body)
    if signer is not None:
        signer.add_auth(request)
    return dict(request.headers.items())


def signed_put_headers(url: str, auth_path: str | None, signer: Any, headers: Mapping[str, str],
                       body: ranged.Body) -> dict[str, str]:
    """A PUT's signed headers with one hash of the body for S3 to check. Over plain http, SigV4 signs the body's
    SHA-256 (`x-amz-content-sha256`), which S3 checks: a Content-MD5 beside it would hash every byte a second time
    (MD5 ran at 690 MB/s here, a third of a 1 GiB close()'s CPU). Otherwise (https, where botocore then leaves the
    payload unsigned, as for botocore's own PutObject; SigV2; anonymous) Content-MD5 is the check."""
    sized = {**headers, "Content-Length": str(len(body))}
    if isinstance(body, ranged.FilePart):
        body.seek(0)  # botocore hashes from where the body stands: after an attempt's send, at its end
    if url.startswith("http://"):
        signed = signed_headers("PUT", url, auth_path, signer, sized, body)
        if PAYLOAD_HASH.fullmatch(signed.get("X-Amz-Content-SHA256", "")):  # (botocore's spelling)
            return signed
    md5 = body.md5() if isinstance(body, ranged.FilePart) else hashlib.md5(body).digest()
    return signed_headers("PUT", url, auth_path, signer, {**sized, "Content-MD5": base64.b64encode(md5).decode()},
                          body)


class S3Client:
    """One bucket at one endpoint with one set of credentials; bounded concurrency per request kind."""

    def __init__(self, config: Config, bucket: str) -> None:
        self.config = config
        self.bucket = bucket
        self.credential_source = ""
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        total = total_threads(config)
        if total > config.threads:
            log.warning("alluxio.underfs.s3.threads.max=%d is less than admin threads (%d) + upload threads (%d): "
                        "using %d", config.threads, config.admin_threads, config.upload_threads, total)
        self._total = trio.CapacityLimiter(total)  # every request
        self._admin = trio.CapacityLimiter(max(1, config.admin_threads))  # metadata requests
        self.upload_limiter = trio.CapacityLimiter(max(1, config.upload_threads))  # PUT and part uploads
        socket_timeout = config.socket_timeout or None
        self._connections = ranged.Connections(ranged.Transport(
            ssl_context=ranged.tls_context(config.ca_bundle, botocore.httpsession.get_cert_path(True)),
            proxy=(config.proxy_host, config.proxy_port or 80) if config.proxy_host else None,
            connect_timeout=min(CONNECT_TIMEOUT, socket_timeout or CONNECT_TIMEOUT), socket_timeout=socket_timeout,
            request_timeout=config.request_timeout or None))
        self.listeners: list[RequestListener] = []
        self._url_prefix: str | None = None  # object URLs are this + the quoted key
        self._auth_prefix: str | None = None  # virtual host: the path SigV2 signs is this + the quoted key
        self._signing: tuple[Any, Any, float] | None = None  # frozen credentials, their signer, when asked

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        await trio_asyncio.aio_as_trio(self._open)()

    async def _open(self) -> None:
        session = aiobotocore.session.get_session()
        resolved = await credentials.resolve(self.config, session)
        self.credential_source = resolved.source
        verify: str | bool | None = self.config.ca_bundle or None
        client_config_ = client_config(self.config)
        self._client = await self._stack.enter_async_context(session.create_client(
            "s3", endpoint_url=endpoint_url(self.config), config=client_config_, verify=verify,
            **resolved.client_kwargs))
        if client_config_.signature_version == "s3":
            self._client.meta.events.register("before-sign.s3", bucket_slash(self.bucket))

    @property
    def events(self) -> Any:
        """botocore's event hooks of this client, for observers such as the metrics (after open())."""
        return self._client.meta.events

    async def close(self) -> None:
        self._connections.close()
        await trio_asyncio.aio_as_trio(self._stack.aclose)()

    # -- the bridge ------------------------------------------------------------------------------------------

    async def _call(self, limiter: trio.CapacityLimiter | None, operation: str, key: str,
                    request: Callable[[], Awaitable[T]]) -> T:
        """One request: first a slot of its kind (metadata, upload; a GET has none), then one of all requests."""
        async with contextlib.AsyncExitStack() as slots:
            if limiter is not None:
                await slots.enter_async_context(limiter)
            await slots.enter_async_context(self._total)
            try:
                result: T = await trio_asyncio.aio_as_trio(request)()
                return result
            except Exception as exc:  # every failure leaves this layer as an S3Error
                raise translate(exc, operation, f"s3://{self.bucket}/{key}", self.credential_source) from exc

    # -- metadata --------------------------------------------------------------------------------------------

    async def check_bucket(self) -> None:
        async def request() -> None:
            await self._client.head_bucket(Bucket=self.bucket)
        await self._call(self._admin, "HeadBucket", "", request)

    async def list_page(self, prefix: str, token: str | None = None, delimiter: str = "/",
                        max_keys: int = 1000, start_after: str = "") -> ListPage:
        async def request() -> ListPage:
            # botocore asks for EncodingType=url itself and decodes the keys, so any byte survives the XML
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if token:
                kwargs["ContinuationToken"] = token
            if start_after:
                kwargs["StartAfter"] = start_after
            reply = await self._client.list_objects_v2(**kwargs)
            objects = [ObjectInfo(key=item["Key"], size=int(item.get("Size", 0)),
                                  etag=item.get("ETag", "").strip('"'), mtime=item["LastModified"])
                       for item in reply.get("Contents", [])]
            prefixes = [item["Prefix"] for item in reply.get("CommonPrefixes", [])]
            more = reply.get("IsTruncated") and reply.get("NextContinuationToken")
            return ListPage(objects, prefixes, more or None)
        return await self._call(self._admin, "ListObjectsV2", prefix, request)

    async def head(self, key: str) -> ObjectInfo | None:
        """None when there is no such object."""
        async def request() -> ObjectInfo:
            reply = await self._client.head_object(Bucket=self.bucket, Key=key)
            return _info_from_reply(key, reply)
        try:
            return await self._call(self._admin, "HeadObject", key, request)
        except S3Error as exc:
            if exc.s3_code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    # -- data ------------------------------------------------------------------------------------------------

    async def get_range(self, key: str, start: int, end: int, etag: str = "",
                        into: memoryview | None = None) -> memoryview:
        """Bytes [start, end) of the object, into `into` when given (a buffer of that length); with `etag`,
        S3Error(ESTALE) when the object has changed or is gone."""
        target = memoryview(bytearray(end - start)) if into is None else into
        headers = {"Range": f"bytes={start}-{end - 1}"} | ({"If-Match": f'"{etag}"'} if etag else {})

        def fetch(url: str, auth_path: str | None, signer: Any) -> None:
            signed = signed_headers("GET", url, auth_path, signer, headers)
            ranged.get_range(self._connections, url, start, end, target, signed)

        async with self._total:
            await self._on_thread("GetObject", key, fetch, end - start, stale_if_gone=bool(etag))
        return target

    async def _on_thread(self, operation: str, key: str, request: Callable[[str, str | None, Any], T],
                         body_bytes: int, stale_if_gone: bool = False, query: str = "") -> T:
        """A request whose body travels on a worker thread (ranged.py), to the object's URL (plus `query`) with
        the signature botocore makes; failures are retried like botocore's standard mode, and so is a body cut
        short. With `stale_if_gone`, a missing key means the version the caller holds is gone: ESTALE."""
        attempts = self.config.max_error_retry + 1
        for attempt in range(attempts):
            began = time.monotonic()
            try:
                url, auth_path = await self._object_url(key)
                signer = await self._signer()
                result = await trio.to_thread.run_sync(request, url + query, auth_path, signer)
            except ranged.RangeFailure as failure:
                last = not failure.retriable or attempt == attempts - 1
                self._observe(operation, f"{failure.status // 100}xx" if failure.status else "failed",
                              time.monotonic() - began, 0, last)
                if last:
                    where = f"s3://{self.bucket}/{key}"
                    if failure.status:
                        # the version this reader holds is gone (deleted or renamed away): stale, as replaced
                        gone = stale_if_gone and failure.status == 404 and failure.code != "NoSuchBucket"
                        code = "VersionGone" if gone else failure.code
                        raise answer_error(code, str(failure.status), str(failure), operation, where,
                                           self.credential_source) from None
                    raise no_answer(failure.code, str(failure), operation, where) from None
                log.info("%s %s failed (%s %s); retrying", operation, key, failure.code, failure)
                await trio.sleep(random.random() * min(MAX_BACKOFF, 2 ** attempt))
                continue
            except Exception as exc:  # credentials that cannot be loaded or refreshed
                raise translate(exc, operation, f"s3://{self.bucket}/{key}", self.credential_source) from exc
            self._observe(operation, "2xx", time.monotonic() - began, body_bytes, True)
            return result
        raise AssertionError("unreachable")

    async def _object_url(self, key: str) -> tuple[str, str | None]:
        """The object's URL as botocore builds it (endpoint, addressing style), and for a virtual-host URL the
        path-style path SigV2 signs (as botocore sets `auth_path`). botocore presigns one probe key once; each
        key's URL is that URL with the key quoted as botocore quotes it (`{Key+}`: all but `/` and `~`).
        Building a URL through botocore costs about 1 ms of CPU, a small file's whole GET here."""
        if self._url_prefix is None:
            presigned: str = await trio_asyncio.aio_as_trio(self._client.generate_presigned_url)(
                "get_object", Params={"Bucket": self.bucket, "Key": URL_PROBE_KEY})
            parts = urllib.parse.urlsplit(presigned)._replace(query="")
            url = urllib.parse.urlunsplit(parts)
            if not url.endswith("/" + URL_PROBE_KEY):
                raise S3Error(errno.EIO, f"unexpected object URL shape from botocore: {url}", "UrlShape")
            self._url_prefix = url[:-len(URL_PROBE_KEY)]
            if hosts_bucket(parts, self.bucket):
                self._auth_prefix = f"/{self.bucket}{parts.path[:-len(URL_PROBE_KEY)]}"
        quoted = urllib.parse.quote(key, safe="/~")
        return self._url_prefix + quoted, None if self._auth_prefix is None else self._auth_prefix + quoted

    async def _signer(self) -> Any:
        """botocore's signer for this client's signature version, with the current credentials (refreshed by
        botocore when they are about to expire, as for its own requests, and asked for again after
        CREDENTIALS_REUSE seconds); None for anonymous access."""
        now = time.monotonic()
        if self._signing is not None and now - self._signing[2] < CREDENTIALS_REUSE:
            return self._signing[1]
        source = self._client._get_credentials()
        if source is None:
            return None
        frozen = await trio_asyncio.aio_as_trio(source.get_frozen_credentials)()
        if self._signing is None or self._signing[0] != frozen:
            auth = botocore.auth.AUTH_TYPE_MAPS[self._client.meta.config.signature_version]
            signer = auth(frozen, "s3", self._client.meta.region_name) if auth.REQUIRES_REGION else auth(frozen)
        else:
            signer = self._signing[1]
        self._signing = (frozen, signer, now)
        return signer

    def _observe(self, operation: str, result: str, seconds: float, body_bytes: int, last: bool) -> None:
        for listener in self.listeners:
            listener(operation, result, seconds, body_bytes, last)

    async def put(self, key: str, body: ranged.Body, metadata: Mapping[str, str] | None = None,
                  content_type: str = "") -> str:
        """The new object's ETag; without `content_type`, the object gets the type of its name. The body goes on
        a worker thread as the GETs' do (a small file's PUT cost the event loop 4.4 ms of CPU in aiobotocore);
        S3 checks it against the hash the request carries."""
        headers = {"Content-Type": content_type or guess_content_type(key)}
        headers |= {f"x-amz-meta-{name}": value for name, value in (metadata or {}).items()}
        if self.config.sse:
            headers["x-amz-server-side-encryption"] = "AES256"
        return (await self._put_on_thread("PutObject", key, body, headers)).strip('"')

    async def _put_on_thread(self, operation: str, key: str, body: ranged.Body, headers: Mapping[str, str],
                             query: str = "") -> str:
        """A PUT of `body` on a worker thread, with a hash of the body S3 checks; the ETag header as given."""
        def upload(url: str, auth_path: str | None, signer: Any) -> str:  # the hashes too, off the event loop
            return ranged.put_object(self._connections, url, body,
                                     signed_put_headers(url, auth_path, signer, headers, body))

        async with self.upload_limiter, self._total:
            return await self._on_thread(operation, key, upload, len(body), query=query)

    def _write_args(self, key: str, metadata: Mapping[str, str] | None, content_type: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if metadata:
            kwargs["Metadata"] = dict(metadata)
        if content_type:
            kwargs["ContentType"] = content_type
        if self.config.sse:
            kwargs["ServerSideEncryption"] = "AES256"
        return kwargs

    async def delete(self, key: str) -> None:
        async def request() -> None:
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        await self._call(self._admin, "DeleteObject", key, request)

    async def delete_many(self, keys: list[str]) -> None:
        """DeleteObjects in batches of 1,000; any key the server could not delete is an error."""
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]

            async def request(batch: list[str] = batch) -> list[dict[str, Any]]:
                reply = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                return list(reply.get("Errors", []))
            errors = await self._call(self._admin, "DeleteObjects", batch[0], request)
            if errors:
                raise S3Error(5, f"DeleteObjects: {errors[0].get('Key')}: {errors[0].get('Message')}",
                              str(errors[0].get("Code")))

    async def copy(self, source: str, target: str, metadata: Mapping[str, str] | None = None,
                   content_type: str = "") -> str:
        """The copy's ETag: not always the source's (a multipart object's copy gets an ETag of its own). With
        `metadata` the copy gets it (and `content_type`) instead of the source's."""
        async def request() -> str:
            kwargs = self._write_args(target, metadata, content_type)
            kwargs["MetadataDirective"] = "REPLACE" if metadata is not None else "COPY"
            reply = await self._client.copy_object(CopySource={"Bucket": self.bucket, "Key": source}, **kwargs)
            return str(reply.get("CopyObjectResult", {}).get("ETag") or "").strip('"')
        return await self._call(self._admin, "CopyObject", source, request)

    # -- multipart -------------------------------------------------------------------------------------------

    async def create_multipart(self, key: str, metadata: Mapping[str, str] | None = None,
                               content_type: str = "") -> str:
        async def request() -> str:
            reply = await self._client.create_multipart_upload(
                **self._write_args(key, metadata, content_type or guess_content_type(key)))
            return str(reply["UploadId"])
        return await self._call(self._admin, "CreateMultipartUpload", key, request)

    async def upload_part(self, key: str, upload_id: str, number: int, body: ranged.Body) -> str:
        """The part's ETag as S3 gave it (quoted), for CompleteMultipartUpload; sent as `put` sends an object."""
        query = f"?partNumber={number}&uploadId={urllib.parse.quote(upload_id, safe='-_.~')}"  # SigV4's encoding
        return await self._put_on_thread("UploadPart", key, body, {}, query)

    async def copy_part(self, source: str, key: str, upload_id: str, number: int, start: int,
                        end: int) -> str:
        async def request() -> str:
            reply = await self._client.upload_part_copy(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": source}, CopySourceRange=f"bytes={start}-{end - 1}")
            return str(reply["CopyPartResult"]["ETag"])
        return await self._call(self.upload_limiter, "UploadPartCopy", key, request)

    async def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> str:
        """The new object's ETag; some servers (Ceph RGW 16) answer none, so then it is read back by HEAD."""
        async def request() -> str:
            parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]
            reply = await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
            return str(reply.get("ETag") or "").strip('"')
        etag = await self._call(self._admin, "CompleteMultipartUpload", key, request)
        if not etag:
            info = await self.head(key)
            etag = info.etag if info else ""
        return etag

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        async def request() -> None:
            await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        await self._call(self._admin, "AbortMultipartUpload", key, request)

    async def list_multipart(self, prefix: str) -> list[tuple[str, str, datetime]]:
        """(key, upload id, initiated) of every multipart upload in progress under `prefix`."""
        async def request() -> list[tuple[str, str, datetime]]:
            found: list[tuple[str, str, datetime]] = []
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            while True:
                reply = await self._client.list_multipart_uploads(**kwargs)
                found += [(u["Key"], u["UploadId"], u["Initiated"]) for u in reply.get("Uploads", [])]
                if not reply.get("IsTruncated"):
                    return found
                kwargs["KeyMarker"] = reply.get("NextKeyMarker", "")
                kwargs["UploadIdMarker"] = reply.get("NextUploadIdMarker", "")
        return await self._call(self._admin, "ListMultipartUploads", prefix, request)

    # -- identity --------------------------------------------------------------------------------------------

    async def bucket_acl(self) -> dict[str, Any]:
        async def request() -> dict[str, Any]:
            reply: dict[str, Any] = await self._client.get_bucket_acl(Bucket=self.bucket)
            return reply
        return await self._call(self._admin, "GetBucketAcl", "", request)


def _info_from_reply(key: str, reply: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(key=key, size=int(reply.get("ContentLength", 0)), etag=str(reply.get("ETag", "")).strip('"'),
                      mtime=reply["LastModified"], metadata=dict(reply.get("Metadata", {})),
                      content_type=str(reply.get("ContentType", "")))
