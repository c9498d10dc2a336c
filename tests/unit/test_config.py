"""Properties parsing, units, precedence and error messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from s3fuse import config
from s3fuse.config import ConfigError, load, parse_duration, parse_size, split_ufs
from s3fuse.s3 import client, credentials

SITE = r"""# a comment
! another comment
alluxio.master.mount.table.root.ufs = s3://bucket/dir
aws.accessKeyId: FILEKEY
aws.secretKey   FILESECRET
alluxio.underfs.s3.endpoint=http://127.0.0.1:\
    9000
alluxio.underfs.s3.owner.id.to.username.mapping=abc=john;x=y
alluxio.underfs.s3.proxy.host=pr\u00f6xy\ host\=1
alluxio.underfs.s3.streaming.upload.partition.size=5MB
alluxio.underfs.s3.socket.timeout=500sec
alluxio.underfs.s3.request.timeout=5min
alluxio.underfs.s3.intermediate.upload.clean.age=1day
alluxio.tmp.dirs=/tmp/a,/tmp/b
weird\ key\u00e9=value
"""


def write_site(tmp_path: Path, text: str = SITE) -> Path:
    (tmp_path / config.SITE_FILE).write_text(text, encoding="utf-8")
    return tmp_path


def test_site_file_syntax(tmp_path: Path) -> None:
    conf = load(str(write_site(tmp_path)))
    assert conf.root_ufs == "s3://bucket/dir"
    assert (conf.bucket, conf.prefix) == ("bucket", "dir/")
    assert (conf.access_key, conf.secret_key) == ("FILEKEY", "FILESECRET")
    assert conf.endpoint == "http://127.0.0.1:9000"  # backslash continuation joins the lines
    assert dict(conf.owner_mapping) == {"abc": "john", "x": "y"}
    assert conf.proxy_host == "pröxy host=1"  # \uXXXX, escaped space and escaped separator
    assert conf.partition_size == 5 * 1024 * 1024
    assert conf.socket_timeout == 500
    assert conf.request_timeout == 300
    assert conf.clean_age == 86400
    assert conf.tmp_dirs == ("/tmp/a", "/tmp/b")


def test_precedence_option_over_define_over_file(tmp_path: Path) -> None:
    write_site(tmp_path)
    conf = load(str(tmp_path), defines=["aws.accessKeyId=DKEY", "aws.secretKey=DSECRET"],
                options=["aws.accessKeyId=OKEY"])
    assert conf.access_key == "OKEY"
    assert conf.secret_key == "DSECRET"
    assert load(str(tmp_path), defines=["aws.accessKeyId=DKEY"]).access_key == "DKEY"


def test_root_mount_options_name_the_same_properties(tmp_path: Path) -> None:
    write_site(tmp_path, "alluxio.master.mount.table.root.option.aws.accessKeyId=ROOTKEY\n"
                         "alluxio.master.mount.table.root.option.aws.secretKey=ROOTSECRET\n")
    assert load(str(tmp_path)).access_key == "ROOTKEY"


@pytest.mark.parametrize(("text", "expected"), [("64MB", 64 << 20), ("5MB", 5 << 20), ("1GB", 1 << 30),
                                                ("100", 100), ("2kb", 2048), ("1.5MB", 3 << 19)])
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("500sec", 500), ("5min", 300), ("1day", 86400),
                                                ("1500", 1.5), ("250ms", 0.25), ("2hour", 7200), ("3d", 259200)])
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


def test_malformed_value_names_file_line_key_and_form(tmp_path: Path) -> None:
    write_site(tmp_path, "# first\n\nalluxio.underfs.s3.socket.timeout=soon\n")
    with pytest.raises(ConfigError) as raised:
        load(str(tmp_path))
    message = str(raised.value)
    assert f"{tmp_path / config.SITE_FILE}:3" in message
    assert "alluxio.underfs.s3.socket.timeout" in message
    assert "500sec" in message  # the expected form


def test_malformed_option_says_it_came_from_the_command_line() -> None:
    with pytest.raises(ConfigError, match=r"option alluxio.underfs.s3.threads.max.*non-negative integer"):
        load(None, options=["alluxio.underfs.s3.threads.max=many"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load(None, defines=["novalue"])


def test_unknown_alluxio_key_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_site(tmp_path, "alluxio.underfs.s3.no.such.thing=1\n")
    with caplog.at_level(logging.WARNING):
        load(str(tmp_path))
        load(str(tmp_path))
    assert sum("alluxio.underfs.s3.no.such.thing" in r.message for r in caplog.records) == 1


def test_missing_conf_dir_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(str(tmp_path / "absent"))


@pytest.mark.parametrize(("uri", "expected"), [("s3://b/", ("b", "")), ("s3://b", ("b", "")),
                                               ("s3://b/dir", ("b", "dir/")), ("s3://b/a/b/", ("b", "a/b/"))])
def test_ufs_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_ufs(uri) == expected


def test_bad_ufs_uri() -> None:
    with pytest.raises(ConfigError, match="not an S3 URI"):
        split_ufs("hdfs://namenode/dir")


def test_template_lists_every_property_with_its_default() -> None:
    text = config.template()
    for field in config.settings():
        assert f"#{field.metadata['name']}={field.metadata['text']}" in text
    committed = Path(__file__).resolve().parents[2] / "conf" / "alluxio-site.properties.template"
    assert committed.read_text() == text, "regenerate with: s3fuse template > conf/alluxio-site.properties.template"


# ---------------------------------------------------------------------------------------------- Alluxio's names


def test_older_alluxio_names_are_aliases(tmp_path: Path) -> None:
    write_site(tmp_path, "s3a.accessKeyId=OLDKEY\ns3a.secretKey=OLDSECRET\nalluxio.underfs.s3.region=eu-west-1\n")
    conf = load(str(tmp_path))
    assert (conf.access_key, conf.secret_key, conf.region) == ("OLDKEY", "OLDSECRET", "eu-west-1")
    # an alias is the same property: the higher source wins whichever name it used
    assert load(str(tmp_path), defines=["aws.accessKeyId=DKEY"]).access_key == "DKEY"
    assert "also read as s3a.accessKeyId" in config.template()


def test_origin_of_each_property_is_kept(tmp_path: Path) -> None:
    write_site(tmp_path)
    conf = load(str(tmp_path), defines=["aws.secretKey=D"], options=["aws.accessKeyId=O"], readonly=True)
    assert conf.origin("aws.accessKeyId") == "option aws.accessKeyId"
    assert conf.origin("aws.secretKey") == "-D aws.secretKey"
    assert conf.origin("alluxio.underfs.s3.endpoint") == f"{tmp_path / config.SITE_FILE}:6"
    assert conf.origin("alluxio.master.mount.table.root.readonly") == "command line"
    assert conf.origin("alluxio.underfs.s3.threads.max") == ""  # the default


def test_half_a_key_pair_is_an_error_naming_its_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"-D aws.accessKeyId: aws.accessKeyId is set but aws.secretKey is not"):
        load(None, defines=["aws.accessKeyId=K"])
    with pytest.raises(ConfigError, match=r"aws.secretKey is set but aws.accessKeyId is not"):
        load(None, options=["s3a.secretKey=S"])


@pytest.mark.parametrize(("endpoint", "ok"), [("http://h:9000", False), ("HTTP://h:9000", False),
                                              ("https://h:9000", True), ("h:9000", True), ("", True)])
def test_sse_requires_https(endpoint: str, ok: bool) -> None:
    options = ["alluxio.underfs.s3.server.side.encryption.enabled=true", f"alluxio.underfs.s3.endpoint={endpoint}"]
    if ok:
        assert load(None, options=options).sse
    else:
        with pytest.raises(ConfigError, match="requires https"):
            load(None, options=options)


def test_signer_names() -> None:
    assert load(None, options=["alluxio.underfs.s3.signer.algorithm=S3SignerType"]).signer == "S3SignerType"
    with pytest.raises(ConfigError, match="S3SignerType"):
        load(None, options=["alluxio.underfs.s3.signer.algorithm=S3V2"])


# ---------------------------------------------------------------------------------------------- client settings


def test_client_config_carries_the_connection_settings() -> None:
    conf = load(None, options=["alluxio.underfs.s3.socket.timeout=500sec", "alluxio.underfs.s3.request.timeout=5min",
                               "alluxio.underfs.s3.proxy.host=proxy.example", "alluxio.underfs.s3.proxy.port=3128",
                               "alluxio.underfs.s3.signer.algorithm=S3SignerType",
                               "alluxio.underfs.s3.disable.dns.buckets=true", "alluxio.underfs.s3.region=eu-west-1",
                               "alluxio.underfs.s3.max.error.retry=5"])
    made = client.client_config(conf)
    assert (made.read_timeout, made.connect_timeout) == (500, client.CONNECT_TIMEOUT)
    assert made.proxies == {"http": "http://proxy.example:3128", "https": "http://proxy.example:3128"}
    assert (made.signature_version, made.s3, made.region_name) == ("s3", {"addressing_style": "path"}, "eu-west-1")
    assert made.retries["max_attempts"] == 6
    session = made.http_session_cls(timeout=(made.connect_timeout, made.read_timeout))  # as aiobotocore makes it
    assert (session._timeout.total, session._timeout.sock_read, session._timeout.sock_connect) == (300, 500, 10)
    defaults = client.client_config(load(None))
    assert (defaults.signature_version, defaults.s3, defaults.proxies) == ("s3v4", {"addressing_style": "virtual"},
                                                                           None)
    assert defaults.http_session_cls()._timeout.total == 60
    unbounded = client.client_config(load(None, options=["alluxio.underfs.s3.request.timeout=0",
                                                         "alluxio.underfs.s3.socket.timeout=0"]))
    assert unbounded.http_session_cls()._timeout.total is None and unbounded.read_timeout is None


@pytest.mark.parametrize(("options", "url"), [
    ([], None), (["alluxio.underfs.s3.endpoint=h:9000"], "http://h:9000"),
    (["alluxio.underfs.s3.endpoint=h:9000", "alluxio.underfs.s3.secure.http.enabled=true"], "https://h:9000"),
    (["alluxio.underfs.s3.endpoint=h:9000", "alluxio.underfs.s3.server.side.encryption.enabled=true"],
     "https://h:9000"),
    (["alluxio.underfs.s3.endpoint=https://h"], "https://h"), (["alluxio.underfs.s3.endpoint=http://h"], "http://h"),
])
def test_endpoint_url(options: list[str], url: str | None) -> None:
    assert client.endpoint_url(load(None, options=options)) == url


def test_threads_max_is_raised_to_admin_plus_upload_like_alluxio(caplog: pytest.LogCaptureFixture) -> None:
    assert client.total_threads(load(None)) == 40  # 40 >= 20 + 20
    low = load(None, options=["alluxio.underfs.s3.threads.max=10", "alluxio.underfs.s3.admin.threads.max=8",
                              "alluxio.underfs.s3.upload.threads.max=6"])
    assert client.total_threads(low) == 14
    with caplog.at_level(logging.WARNING, logger="s3fuse.s3.client"):
        made = client.S3Client(low, "b")
    assert "threads.max=10 is less than admin threads (8) + upload threads (6): using 14" in caplog.text
    assert client.client_config(low).max_pool_connections == 14
    assert made.upload_limiter.total_tokens == 6


# ---------------------------------------------------------------------------------------------- credential chain


@pytest.mark.parametrize(("environ", "names"), [
    ({"AWS_ACCESS_KEY_ID": "K1", "AWS_SECRET_ACCESS_KEY": "S1"}, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ACCESS_KEY": "K1", "AWS_SECRET_KEY": "S1"}, "AWS_ACCESS_KEY/AWS_SECRET_KEY"),
    ({"AWS_ACCESS_KEY": "K1", "AWS_SECRET_ACCESS_KEY": "S1"}, "AWS_ACCESS_KEY/AWS_SECRET_ACCESS_KEY"),
    # both spellings: the AWS SDK for Java's order (AWS_ACCESS_KEY_ID first, AWS_SECRET_KEY first)
    ({"AWS_ACCESS_KEY_ID": "K1", "AWS_ACCESS_KEY": "K2", "AWS_SECRET_KEY": "S1", "AWS_SECRET_ACCESS_KEY": "S2"},
     "AWS_ACCESS_KEY_ID/AWS_SECRET_KEY"),
])
def test_environment_spellings(environ: dict[str, str], names: str) -> None:
    found = credentials.from_environment(environ)
    assert found is not None
    assert (found.client_kwargs["aws_access_key_id"], found.client_kwargs["aws_secret_access_key"]) == ("K1", "S1")
    assert found.source.startswith(f"the environment ({names})")


def test_half_an_environment_pair_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert credentials.from_environment({"AWS_ACCESS_KEY": "K1"}) is None
    assert "AWS_SECRET_KEY or AWS_SECRET_ACCESS_KEY" in caplog.text


def test_configured_keys_name_their_source(tmp_path: Path) -> None:
    write_site(tmp_path)
    by_site = credentials.from_config(load(str(tmp_path)))
    assert by_site is not None and by_site.source.startswith(f"the site file {tmp_path / config.SITE_FILE}:4,")
    mixed = credentials.from_config(load(str(tmp_path), options=["aws.accessKeyId=AKIAOPTIONKEY1"]))
    assert mixed is not None
    assert mixed.source == (f"the mount option aws.accessKeyId (--option/-o) (aws.secretKey from the site file "
                            f"{tmp_path / config.SITE_FILE}:5), access key AKIA...KEY1")
    assert "FILESECRET" not in mixed.source
