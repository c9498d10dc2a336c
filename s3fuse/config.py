"""Configuration: Alluxio property names, their types and defaults, and the precedence of their sources.

This is the only module that reads properties. Every setting is one field of the frozen `Config`; the field's
metadata carries the Alluxio property name, its form and a one-line explanation, so the parser, the template
`conf/alluxio-site.properties.template` and the README table all come from this one list.

Precedence, highest first: mount options (`--option k=v`, `-o k=v`) > `-D k=v` > the site file > defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import javaproperties

log = logging.getLogger(__name__)

SITE_FILE = "alluxio-site.properties"
DEFAULT_CONF_DIR = "/etc/s3fuse"
ROOT_OPTION_PREFIX = "alluxio.master.mount.table.root.option."
# alluxio.master.mount.table.NAME.{ufs,path,readonly,shared,option.KEY}: nested mounts grafted at start
NESTED_PROPERTY = re.compile(r"alluxio\.master\.mount\.table\.(?!root\.)([A-Za-z0-9_-]+)\."
                             r"(ufs|path|readonly|shared|option\.(.+))$")


@dataclass(frozen=True)
class NestedMount:
    """A bucket or prefix the daemon grafts at `path` when it starts, as `s3fuse fs mount` would."""

    name: str
    path: str
    ufs: str
    readonly: bool = False
    shared: bool = False
    options: tuple[str, ...] = ()  # key=value, as `--option` gives them


class ConfigError(Exception):
    """A property or option that cannot be used; the message says where it came from and what is expected."""


# ---------------------------------------------------------------------------------------------- value forms

_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
    "p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50,
}
# Alluxio's FormatUtils.parseTimeSize: a bare number is milliseconds.
_DURATION_UNITS = {
    "": 0.001, "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """`64MB` -> 67108864 (binary units, as Alluxio reads them)."""
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(text)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_duration(text: str) -> float:
    """`500sec` -> 500.0 seconds; a bare number is milliseconds."""
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(text)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)


def parse_int(text: str) -> int:
    value = int(text.strip())
    if value < 0:
        raise ValueError(text)
    return value


def parse_mode(text: str) -> int:
    """`0700` or `700` -> 0o700."""
    value = int(text.strip(), 8)
    if not 0 <= value <= 0o7777:
        raise ValueError(text)
    return value


def parse_mapping(text: str) -> tuple[tuple[str, str], ...]:
    """`id1=user1;id2=user2` -> (("id1", "user1"), ("id2", "user2")); a tuple keeps `Config` hashable."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(text)
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def parse_str(text: str) -> str:
    return text.strip()


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Form:
    """How a property's text becomes a value, and how the error message describes a valid text."""

    parse: Callable[[str], Any]
    expected: str


STR = Form(parse_str, "a string")
BOOL = Form(parse_bool, "true or false")
INT = Form(parse_int, "a non-negative integer")
SIZE = Form(parse_size, "a size such as 5MB, 64MB, 1GB")
DURATION = Form(parse_duration, "a duration such as 500ms, 500sec, 5min, 1hour, 1day (a bare number is ms)")
MODE = Form(parse_mode, "an octal mode such as 0700")
MAPPING = Form(parse_mapping, "pairs such as id1=user1;id2=user2")
LIST = Form(parse_list, "a comma-separated list")


SIGNERS = {"": "s3v4", "AWSS3V4SignerType": "s3v4", "AWS4SignerType": "s3v4", "S3SignerType": "s3"}


def parse_signer(text: str) -> str:
    """The AWS SDK signer names Alluxio passes through; an unknown one is an error, not a silent SigV4."""
    value = text.strip()
    if value not in SIGNERS:
        raise ValueError(text)
    return value


SIGNER = Form(parse_signer, "S3SignerType (signature v2) or AWSS3V4SignerType (v4)")


def prop(name: str, form: Form, default: str, doc: str, aliases: tuple[str, ...] = ()) -> Any:
    """A `Config` field bound to an Alluxio property; `default` is written as a user would write it. `aliases`
    are older names Alluxio also reads (`s3a.accessKeyId` for `aws.accessKeyId`)."""
    return field(default=form.parse(default), metadata={"name": name, "form": form, "text": default, "doc": doc,
                                                         "aliases": aliases})


# ---------------------------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Config:
    """Every setting s3fuse reads, parsed once and passed down the layers."""

    # mount table
    root_ufs: str = prop("alluxio.master.mount.table.root.ufs", STR, "",
                         "What to mount: s3://BUCKET/DIR, or s3://BUCKET/ for the whole bucket")
    readonly: bool = prop("alluxio.master.mount.table.root.readonly", BOOL, "false",
                          "Mount read-only: every change is EROFS and no PUT/POST/DELETE is sent")
    shared: bool = prop("alluxio.master.mount.table.root.shared", BOOL, "false",
                        "Every local user gets rwx on the mount (mode 0777, with allow_other)")
    # credentials
    access_key: str = prop("aws.accessKeyId", STR, "",
                           "S3 access key id; with aws.secretKey it wins over the environment, the profile file "
                           "and the instance profile", aliases=("s3a.accessKeyId",))
    secret_key: str = prop("aws.secretKey", STR, "", "S3 secret access key (never logged)",
                           aliases=("s3a.secretKey",))
    # connection
    endpoint: str = prop("alluxio.underfs.s3.endpoint", STR, "",
                         "S3 endpoint: host:port, or a URL http(s)://host:port (empty: AWS S3 for the region)")
    region: str = prop("alluxio.underfs.s3.endpoint.region", STR, "",
                       "Region requests are signed for (empty: us-east-1)", aliases=("alluxio.underfs.s3.region",))
    secure_http: bool = prop("alluxio.underfs.s3.secure.http.enabled", BOOL, "false",
                             "Use https for an endpoint given as host:port")
    path_style: bool = prop("alluxio.underfs.s3.disable.dns.buckets", BOOL, "false",
                            "Path-style requests (http://host/bucket/key) instead of virtual-host style "
                            "(http://bucket.host/key; an IP endpoint always gets path style)")
    proxy_host: str = prop("alluxio.underfs.s3.proxy.host", STR, "",
                           "HTTP proxy every S3 request goes through (empty: none)")
    proxy_port: int = prop("alluxio.underfs.s3.proxy.port", INT, "0", "Port of that HTTP proxy (0: 80)")
    signer: str = prop("alluxio.underfs.s3.signer.algorithm", SIGNER, "",
                       "S3SignerType: AWS signature version 2 (empty or AWSS3V4SignerType: version 4)")
    sse: bool = prop("alluxio.underfs.s3.server.side.encryption.enabled", BOOL, "false",
                     "SSE-S3 (AES256) on every PUT, multipart upload and copy; also forces https")
    ca_bundle: str = prop("aws.caBundle", STR, "",
                          "CA certificates (PEM file) that verify an https endpoint (empty: $AWS_CA_BUNDLE, else "
                          "the system's)")
    socket_timeout: float = prop("alluxio.underfs.s3.socket.timeout", DURATION, "50sec",
                                 "Longest wait for a connection (at most 10sec) or for the next bytes on it")
    request_timeout: float = prop("alluxio.underfs.s3.request.timeout", DURATION, "1min",
                                  "Deadline of each request attempt, its answer's body included (0: none)")
    max_error_retry: int = prop("alluxio.underfs.s3.max.error.retry", INT, "3",
                                "Retries of a failed request (throttling, 5xx, resets, timeouts) before it fails")
    admin_threads: int = prop("alluxio.underfs.s3.admin.threads.max", INT, "20",
                              "Concurrent metadata requests (list, head, copy, delete, multipart bookkeeping)")
    threads: int = prop("alluxio.underfs.s3.threads.max", INT, "40",
                        "Concurrent S3 requests in all, the connection pool (raised to admin + upload threads "
                        "when lower)")
    upload_threads: int = prop("alluxio.underfs.s3.upload.threads.max", INT, "20",
                               "Concurrent writes of object data (PUT, multipart parts)")
    service_threads: int = prop("alluxio.underfs.object.store.service.threads", INT, "20",
                                "Concurrent copies of a directory rename (one per key)")
    # identity
    inherit_acl: bool = prop("alluxio.underfs.s3.inherit.acl", BOOL, "true",
                             "Owner and mode from the bucket ACL (false: no ACL request, default.mode applies)")
    default_mode: int = prop("alluxio.underfs.s3.default.mode", MODE, "0700",
                             "Mode of every file and directory when inherit.acl=false or the ACL is unreadable")
    owner_mapping: tuple[tuple[str, str], ...] = prop(
        "alluxio.underfs.s3.owner.id.to.username.mapping", MAPPING, "",
        "S3 canonical user id to local user name: id1=user1;id2=user2")
    # writes
    tmp_dirs: tuple[str, ...] = prop("alluxio.tmp.dirs", LIST, "/tmp",
                                     "Where files are staged before upload")
    streaming_upload: bool = prop("alluxio.underfs.s3.streaming.upload.enabled", BOOL, "false",
                                  "Upload parts while a file is written, so close() waits for the last part")
    partition_size: int = prop("alluxio.underfs.s3.streaming.upload.partition.size", SIZE, "64MB",
                               "Part size of streaming uploads")
    multipart_threshold: int = prop("alluxio.underfs.s3.multipart.upload.threshold", SIZE, "64MB",
                                    "Staged files at least this large go up as parallel multipart")
    clean_age: float = prop("alluxio.underfs.s3.intermediate.upload.clean.age", DURATION, "3day",
                            "Abort multipart uploads older than this")
    cleanup_enabled: bool = prop("alluxio.underfs.cleanup.enabled", BOOL, "false",
                                 "Abort stale multipart uploads at start and every cleanup interval")
    cleanup_interval: float = prop("alluxio.underfs.cleanup.interval", DURATION, "1day",
                                   "Interval between stale-upload cleanups")
    # caches
    cache_enabled: bool = prop("alluxio.user.client.cache.enabled", BOOL, "true",
                               "Keep read blocks in a local disk cache")
    cache_dirs: tuple[str, ...] = prop("alluxio.user.client.cache.dirs", LIST, "/tmp/alluxio_cache",
                                       "Local disk cache directory")
    cache_size: int = prop("alluxio.user.client.cache.size", SIZE, "1GB", "Disk cache size bound")
    page_size: int = prop("alluxio.user.client.cache.page.size", SIZE, "8MB",
                          "Block size of the cache and of ranged GETs")
    metadata_ttl: float = prop("alluxio.user.metadata.cache.expiration.time", DURATION, "1min",
                               "How long attributes and listings are trusted before S3 is asked again")
    metadata_max_size: int = prop("alluxio.user.metadata.cache.max.size", INT, "100000",
                                  "Directory listings kept in the metadata cache")
    direct_io: bool = prop("alluxio.fuse.direct.io.enabled", BOOL, "false",
                           "Read-only opens bypass the kernel's page cache (mount option direct_io): a streaming "
                           "read of a big file skips a copy and the page cache's memory, but every read(2) "
                           "goes to s3fuse at its own size, nothing is kept for a rereading, a MAP_SHARED "
                           "mmap of a file opened read-only fails with ENODEV (MAP_PRIVATE works), and writes "
                           "go without the kernel's writeback cache, as in streaming mode")
    # service
    umount_timeout: float = prop("alluxio.fuse.umount.timeout", DURATION, "1min",
                                 "How long a stop waits for uploads in flight; then their bytes are kept in the "
                                 "recovery folder")
    web_port: int = prop("alluxio.master.web.port", INT, "19999", "Status page and /metrics port (0: off)")
    web_bind_host: str = prop("alluxio.master.web.bind.host", STR, "127.0.0.1", "Status page address")
    # where each explicitly set property came from (property name, origin): the credential log line names it
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
    nested_mounts: tuple[NestedMount, ...] = ()
    conf_dir: str = ""  # the configuration directory the site file came from, for nested mounts to read it too

    def origin(self, name: str) -> str:
        """`/etc/s3fuse/alluxio-site.properties:3`, `-D aws.accessKeyId`, `option aws.accessKeyId`, or "" for a
        default."""
        return dict(self.origins).get(name, "")

    @property
    def bucket(self) -> str:
        return split_ufs(self.root_ufs)[0]

    @property
    def prefix(self) -> str:
        return split_ufs(self.root_ufs)[1]


def settings() -> list[dataclasses.Field[Any]]:
    """The property-bound fields of `Config`, in declaration order."""
    return [f for f in dataclasses.fields(Config) if "name" in f.metadata]


PROPERTY_FIELDS: Mapping[str, dataclasses.Field[Any]] = {f.metadata["name"]: f for f in settings()}
ALIASES: Mapping[str, str] = {alias: f.metadata["name"] for f in settings() for alias in f.metadata["aliases"]}


def split_ufs(uri: str) -> tuple[str, str]:
    """`s3://bucket/dir/sub` -> ("bucket", "dir/sub/"); `s3://bucket/` -> ("bucket", "")."""
    match = re.fullmatch(r"s3a?://([^/]+)(/.*)?", uri.strip())
    if not match:
        raise ConfigError(f"{uri!r} is not an S3 URI: expected s3://BUCKET/DIR or s3://BUCKET/")
    path = (match.group(2) or "").strip("/")
    return match.group(1), f"{path}/" if path else ""


# ---------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Setting:
    """A raw property and where it came from, for error messages."""

    value: str
    origin: str


def read_properties(path: Path) -> dict[str, Setting]:
    """Java properties syntax (comments, `=`/`:`/space separators, continuations, escapes), with line numbers."""
    found: dict[str, Setting] = {}
    line = 1
    with path.open(encoding="utf-8") as handle:
        for element in javaproperties.parse(handle):
            if isinstance(element, javaproperties.KeyValue):
                found[element.key] = Setting(element.value, f"{path}:{line}")
            line += element.source.count("\n")
    return found


def parse_pairs(pairs: Iterable[str], origin: str) -> dict[str, Setting]:
    """`key=value` strings from the command line."""
    found: dict[str, Setting] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{origin}: {pair!r}: expected key=value")
        found[key.strip()] = Setting(value, f"{origin} {key.strip()}")
    return found


def conf_dir(explicit: str | None) -> Path | None:
    """`--conf DIR`, else `$S3FUSE_CONF_DIR`, else `/etc/s3fuse` when it exists, else none."""
    if explicit:
        return Path(explicit)
    if os.environ.get("S3FUSE_CONF_DIR"):
        return Path(os.environ["S3FUSE_CONF_DIR"])
    default = Path(DEFAULT_CONF_DIR)
    return default if default.is_dir() else None


_warned_unknown: set[str] = set()


def build(sources: Iterable[Mapping[str, Setting]], **overrides: Any) -> Config:
    """Merge sources (lowest precedence first), parse each value once, and apply typed overrides on top."""
    merged: dict[str, Setting] = {}
    for source in sources:
        for key, setting in source.items():
            if key.startswith(ROOT_OPTION_PREFIX):  # Alluxio's root mount options name the same properties
                key = key[len(ROOT_OPTION_PREFIX):]
            merged[ALIASES.get(key, key)] = setting
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, setting in merged.items():
        match = NESTED_PROPERTY.match(key)
        if match:
            collect_nested(nested, match, setting)
            continue
        bound = PROPERTY_FIELDS.get(key)
        if bound is None:
            if key.startswith("alluxio.") and key not in _warned_unknown:
                _warned_unknown.add(key)
                log.warning("%s: unknown property %s is ignored (see conf/alluxio-site.properties.template)",
                            setting.origin, key)
            continue
        form: Form = bound.metadata["form"]
        try:
            values[bound.name] = form.parse(setting.value)
        except ValueError:
            raise ConfigError(
                f"{setting.origin}: {key}={setting.value!r}: expected {form.expected}") from None
        origins[key] = setting.origin
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            origins[_property_of(name)] = "command line"
    config = Config(**values, origins=tuple(sorted(origins.items())), nested_mounts=nested_mounts(nested))
    check(config)
    return config


def collect_nested(nested: dict[str, dict[str, Any]], match: re.Match[str], setting: Setting) -> None:
    name, part, option = match.group(1), match.group(2), match.group(3)
    spec = nested.setdefault(name, {"options": [], "origin": setting.origin})
    if option:
        spec["options"].append(f"{option}={setting.value}")
    elif part in ("readonly", "shared"):
        try:
            spec[part] = parse_bool(setting.value)
        except ValueError:
            raise ConfigError(f"{setting.origin}: {match.group(0)}={setting.value!r}: expected true or false") from None
    else:
        spec[part] = setting.value.strip()


def nested_mounts(nested: dict[str, dict[str, Any]]) -> tuple[NestedMount, ...]:
    mounts = []
    for name, spec in sorted(nested.items()):
        if not spec.get("ufs") or not spec.get("path"):
            raise ConfigError(f"{spec['origin']}: the nested mount {name!r} needs both "
                              f"alluxio.master.mount.table.{name}.ufs and .path")
        split_ufs(spec["ufs"])
        mounts.append(NestedMount(name, spec["path"], spec["ufs"], spec.get("readonly", False),
                                  spec.get("shared", False), tuple(spec["options"])))
    return tuple(mounts)


def _property_of(field_name: str) -> str:
    return next((f.metadata["name"] for f in settings() if f.name == field_name), field_name)


def check(config: Config) -> None:
    """Combinations no single value shows wrong; each message names where the values came from."""
    if config.root_ufs:
        split_ufs(config.root_ufs)
    if bool(config.access_key) != bool(config.secret_key):
        given, missing = ("aws.accessKeyId", "aws.secretKey") if config.access_key else \
            ("aws.secretKey", "aws.accessKeyId")
        raise ConfigError(f"{config.origin(given)}: {given} is set but {missing} is not: give both (or neither, "
                          "to use the environment, ~/.aws/credentials or the instance profile)")
    if config.sse and config.endpoint.strip().lower().startswith("http://"):
        raise ConfigError(f"{config.origin('alluxio.underfs.s3.endpoint')}: alluxio.underfs.s3.endpoint is http "
                          "but alluxio.underfs.s3.server.side.encryption.enabled=true requires https: use https:// "
                          "or host:port")


def load(conf: str | None = None, defines: Iterable[str] = (), options: Iterable[str] = (),
         **overrides: Any) -> Config:
    """The configuration a command runs with: site file < `-D` < mount options < explicit overrides."""
    sources: list[Mapping[str, Setting]] = []
    directory = conf_dir(conf)
    if directory is not None:
        site = directory / SITE_FILE
        if site.is_file():
            sources.append(read_properties(site))
        elif conf:
            raise ConfigError(f"{site}: no such file (the --conf directory must hold {SITE_FILE})")
        else:
            directory = None
    sources.append(parse_pairs(defines, "-D"))
    sources.append(parse_pairs(options, "option"))
    config = build(sources, **overrides)
    return dataclasses.replace(config, conf_dir=str(directory)) if directory is not None else config


def template() -> str:
    """The text of conf/alluxio-site.properties.template: every property, its default and what it does."""
    lines = ["# s3fuse configuration: copy to alluxio-site.properties and uncomment what you change.",
             "# Sizes take B/KB/MB/GB/TB; durations ms/sec/min/hour/day (a bare number is ms).",
             "# Precedence: mount option (--option/-o) > -D on the command line > this file > the default.", ""]
    for f in settings():
        aliases = f.metadata["aliases"]
        also = f" (also read as {', '.join(aliases)})" if aliases else ""
        lines.append(f"# {f.metadata['doc']}{also}")
        lines.append(f"#{f.metadata['name']}={f.metadata['text']}")
    return "\n".join(lines) + "\n"
