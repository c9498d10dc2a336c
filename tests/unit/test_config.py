"""Properties parsing, units, precedence and error messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from s3fuse import config
from s3fuse.config import ConfigError, load, parse_duration, parse_size, split_ufs

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
