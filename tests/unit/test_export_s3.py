"""quantbeat.services.export: artifacts to S3-compatible storage, against moto's in-memory S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from quant.backtest.report import ReportData
from quant.errors import ConfigError, PermanentError, ServiceUnavailable
from quantbeat.cli import main as cli
from quantbeat.services import backtests
from quantbeat.services.export import (
    DEFAULT_PREFIX,
    ExportDenied,
    ExportError,
    ExportFailed,
    ExportUnavailable,
    S3Target,
    artifacts_for,
    content_type_for,
    export_artifacts,
)

BUCKET = "quant-research"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET"
ACCESS_KEY = "AKIATESTINGKEYID0001"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials only; nothing from the developer's own AWS setup leaks in."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _artifacts() -> dict[str, bytes]:
    return artifacts_for(
        report_html="<!DOCTYPE html><html><body>삼성전자 report</body></html>",
        report_png=b"\x89PNG\r\n\x1a\n" + b"\x00" * 32,
        trades_csv="symbol,pnl\nKOSPI:005930,15000\n",
        equity_csv="time,equity\n2024-01-02,100000000\n",
        metrics={"total_return": 0.25, "sharpe": 1.5, "calmar": float("nan"), "trades": 2},
    )


def _keys(client: Any) -> list[str]:
    listing = client.list_objects_v2(Bucket=BUCKET)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


# ---------------------------------------------------------------------------------------------
# Export


def test_export_writes_every_artifact_with_its_content_type(s3: Any):
    artifacts = _artifacts()
    uris = export_artifacts("bt-42", artifacts, S3Target(BUCKET))
    prefix = f"{DEFAULT_PREFIX}/bt-42"
    assert uris == [
        f"s3://{BUCKET}/{prefix}/report.html",
        f"s3://{BUCKET}/{prefix}/report.png",
        f"s3://{BUCKET}/{prefix}/trades.csv",
        f"s3://{BUCKET}/{prefix}/equity.csv",
        f"s3://{BUCKET}/{prefix}/metrics.json",
    ]
    expected_types = {
        "report.html": "text/html; charset=utf-8",
        "report.png": "image/png",
        "trades.csv": "text/csv",
        "equity.csv": "text/csv",
        "metrics.json": "application/json",
    }
    for name, body in artifacts.items():
        obj = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{name}")
        assert obj["Body"].read() == body
        assert obj["ContentType"] == expected_types[name]


def test_reexport_overwrites_the_same_keys(s3: Any):
    target = S3Target(BUCKET, prefix="runs")
    first = export_artifacts("bt-1", {"report.html": b"v1", "metrics.json": b"{}"}, target)
    keys = _keys(s3)
    assert keys == ["runs/bt-1/metrics.json", "runs/bt-1/report.html"]
    second = export_artifacts("bt-1", {"report.html": b"v2", "metrics.json": b"{}"}, target)
    assert second == first
    assert _keys(s3) == keys
    assert s3.get_object(Bucket=BUCKET, Key="runs/bt-1/report.html")["Body"].read() == b"v2"


def test_export_uses_a_given_client_and_content_type_overrides(s3: Any):
    uris = export_artifacts(
        "bt-7",
        {"notes.md": b"# hi", "blob.bin": b"\x00\x01"},
        S3Target(BUCKET, prefix=""),
        client=s3,
        content_types={"notes.md": "text/markdown"},
    )
    assert uris == [f"s3://{BUCKET}/bt-7/notes.md", f"s3://{BUCKET}/bt-7/blob.bin"]
    assert s3.get_object(Bucket=BUCKET, Key="bt-7/notes.md")["ContentType"] == "text/markdown"
    blob = s3.get_object(Bucket=BUCKET, Key="bt-7/blob.bin")
    assert blob["ContentType"] == "application/octet-stream"


def test_missing_bucket_raises_export_error_naming_the_bucket(s3: Any):
    target = S3Target("no-such-bucket", prefix="p")
    with pytest.raises(ExportError) as caught:
        export_artifacts("bt-1", {"report.html": b"x"}, target)
    err = caught.value
    assert "no-such-bucket" in str(err)
    assert "s3://no-such-bucket/p/bt-1/report.html" in str(err)
    assert err.bucket == "no-such-bucket"
    assert err.key == "p/bt-1/report.html"
    assert err.code == "NoSuchBucket"
    assert err.uploaded == ()
    assert SECRET not in str(err)
    assert ACCESS_KEY not in str(err)


def test_export_error_lists_what_was_uploaded_before_the_failure(s3: Any):
    class FailingSecond:
        def __init__(self) -> None:
            self.calls = 0

        def put_object(self, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == 2:
                return s3.put_object(**{**kwargs, "Bucket": "missing-bucket"})
            return s3.put_object(**kwargs)

    with pytest.raises(ExportError) as caught:
        export_artifacts(
            "bt-3", {"a.csv": b"1", "b.csv": b"2"}, S3Target(BUCKET, "x"), client=FailingSecond()
        )
    assert caught.value.uploaded == (f"s3://{BUCKET}/x/bt-3/a.csv",)
    assert caught.value.key == "x/bt-3/b.csv"


def test_missing_credentials_raise_export_error(monkeypatch: pytest.MonkeyPatch, aws_env: None):
    # No moto here (it supplies credentials of its own): boto fails while signing, before any
    # request is sent; the endpoint is a closed local port in case it ever did send.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    target = S3Target(BUCKET, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ExportError, match=BUCKET) as caught:
        export_artifacts("bt-1", {"report.html": b"x"}, target)
    assert "credentials" in str(caught.value).lower()


def test_client_is_built_from_the_target(monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class Recorder:
        def __init__(self) -> None:
            self.puts: list[dict[str, Any]] = []

        def put_object(self, **kwargs: Any) -> dict[str, Any]:
            self.puts.append(kwargs)
            return {}

    recorder = Recorder()

    def fake_client(*args: Any, **kwargs: Any) -> Recorder:
        calls.append((args, kwargs))
        return recorder

    monkeypatch.setattr(boto3, "client", fake_client)
    target = S3Target.parse("s3://minio-bucket/qb", endpoint_url="http://minio:9000", region="kr")
    export_artifacts("bt-9", {"equity.csv": b"t,e\n"}, target)
    assert len(calls) == 1
    args, kwargs = calls[0]
    config = kwargs.pop("config")
    assert (args, kwargs) == (("s3",), {"endpoint_url": "http://minio:9000", "region_name": "kr"})
    # Every request is bounded: QUANTBEAT_S3_TIMEOUT (default 30 s) connect/read, 3 attempts.
    assert (config.connect_timeout, config.read_timeout) == (30.0, 30.0)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert recorder.puts == [
        {
            "Bucket": "minio-bucket",
            "Key": "qb/bt-9/equity.csv",
            "Body": b"t,e\n",
            "ContentType": "text/csv",
        }
    ]


def test_nothing_to_export_returns_no_uris():
    assert export_artifacts("bt-1", {}, S3Target(BUCKET), client=object()) == []


# ---------------------------------------------------------------------------------------------
# Failures belong to the error tree: the CLI's exit code says who must act


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


class _Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def put_object(self, **kwargs: Any) -> None:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "kind", "family", "exit_code"),
    [
        (_client_error("AccessDenied", 403), ExportDenied, ConfigError, cli.EXIT_CONFIG),
        (_client_error("InvalidAccessKeyId", 403), ExportDenied, ConfigError, cli.EXIT_CONFIG),
        (_client_error("NoSuchBucket", 404), ExportDenied, ConfigError, cli.EXIT_CONFIG),
        (NoCredentialsError(), ExportDenied, ConfigError, cli.EXIT_CONFIG),
        (
            _client_error("SlowDown", 503),
            ExportUnavailable,
            ServiceUnavailable,
            cli.EXIT_UNAVAILABLE,
        ),
        (
            _client_error("Whatever", 500),
            ExportUnavailable,
            ServiceUnavailable,
            cli.EXIT_UNAVAILABLE,
        ),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            ExportUnavailable,
            ServiceUnavailable,
            cli.EXIT_UNAVAILABLE,
        ),
        (_client_error("InvalidArgument", 400), ExportFailed, PermanentError, cli.EXIT_FAILED),
    ],
)
def test_export_errors_are_classified_by_cause(
    exc: Exception, kind: type[ExportError], family: type[Exception], exit_code: int
):
    with pytest.raises(ExportError) as caught:
        export_artifacts("bt-1", {"report.html": b"x"}, S3Target(BUCKET), client=_Raising(exc))
    assert type(caught.value) is kind
    assert isinstance(caught.value, family)
    code, message = cli._classify(caught.value)
    assert code == exit_code
    assert f"s3://{BUCKET}/quantbeat/backtests/bt-1/report.html" in message


def _report(run_id: str) -> ReportData:
    times = np.datetime64("2026-01-05", "D") + np.arange(30).astype("timedelta64[D]")
    return ReportData(
        run_id=run_id,
        title="SMA crossover — KOSPI:005930",
        times=times,
        equity=np.linspace(100_000_000.0, 104_000_000.0, 30),
        metrics={"total_return": 0.04, "trades": 0},
        trades=[],
        spec={"strategy": "sma_crossover"},
        data_version="candles@2026-02-03",
    )


@set_initial_no_auth_action_count(3)  # moto enforces IAM after the three setup calls
def test_report_export_refused_by_s3_exits_3_with_a_clear_message(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setattr(backtests, "report_data", _report)  # a completed run, without a database
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # credentials read afresh below
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="no-rights")
        key = iam.create_access_key(UserName="no-rights")["AccessKey"]
        # A real user of this account without any policy: S3 answers AccessDenied.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        boto3.DEFAULT_SESSION = None
        code = cli.main(
            [
                "backtest",
                "report",
                "bt-42",
                "--out",
                str(tmp_path),
                "--no-png",
                "--export",
                f"s3://{BUCKET}/reports",
            ]
        )
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG == 3
    assert err.startswith("quantbeat: configuration error: S3 export to ")
    assert f"s3://{BUCKET}/reports/bt-42/report.html" in err
    assert "AccessDenied" in err
    assert "credentials" in err
    assert "policy" in err
    assert key["SecretAccessKey"] not in err
    assert (tmp_path / "backtest-bt-42.html").exists()  # the local report was written first


def test_report_with_a_malformed_export_url_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    def no_report(run_id: str) -> ReportData:
        raise AssertionError("the URL is checked before the report is built")

    monkeypatch.setattr(backtests, "report_data", no_report)
    code = cli.main(
        ["backtest", "report", "bt-42", "--out", str(tmp_path), "--export", "http://bucket/x"]
    )
    assert code == cli.EXIT_USAGE
    assert "malformed S3 URL 'http://bucket/x'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Validation (before anything is uploaded)


@pytest.mark.parametrize(
    "name", ["", "a/b.csv", "../report.html", "x..y", ".hidden", "with space.csv", "tab\t.csv"]
)
def test_bad_artifact_names_raise_value_error_naming_them(name: str):
    client = _NeverCalled()
    with pytest.raises(ValueError, match="artifact name") as caught:
        export_artifacts("bt-1", {"ok.csv": b"1", name: b"x"}, S3Target(BUCKET), client=client)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("run_id", ["", "a/b", "..", "bt..1", "bt 1", "a\\b"])
def test_bad_run_ids_raise_value_error_naming_them(run_id: str):
    with pytest.raises(ValueError, match="run_id") as caught:
        export_artifacts(run_id, {"ok.csv": b"1"}, S3Target(BUCKET), client=_NeverCalled())
    assert repr(run_id) in str(caught.value)


def test_content_types_for_unknown_artifacts_are_rejected():
    with pytest.raises(ValueError, match=r"typo\.csv"):
        export_artifacts(
            "bt-1",
            {"ok.csv": b"1"},
            S3Target(BUCKET),
            client=_NeverCalled(),
            content_types={"typo.csv": "text/csv"},
        )


def test_non_bytes_artifacts_are_rejected():
    with pytest.raises(TypeError, match=r"report\.html"):
        export_artifacts(
            "bt-1",
            {"report.html": "<html>"},  # type: ignore[dict-item]
            S3Target(BUCKET),
            client=_NeverCalled(),
        )


class _NeverCalled:
    def put_object(self, **kwargs: Any) -> None:
        raise AssertionError("nothing may be uploaded when validation fails")


# ---------------------------------------------------------------------------------------------
# S3Target


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket-1/some/prefix", "bucket-1", "some/prefix"),
        ("s3://bucket-1/some/prefix/", "bucket-1", "some/prefix"),
        ("S3://bucket.with.dots/a", "bucket.with.dots", "a"),
        ("s3://bucket-1", "bucket-1", ""),
        ("s3://bucket-1/", "bucket-1", ""),
        ("  s3://bucket-1/x  ", "bucket-1", "x"),
    ],
)
def test_parse(url: str, bucket: str, prefix: str):
    target = S3Target.parse(url, endpoint_url="http://localhost:9000", region="ap-northeast-2")
    assert target == S3Target(bucket, prefix, "http://localhost:9000", "ap-northeast-2")


@pytest.mark.parametrize(
    "url",
    [
        "bucket/prefix",
        "http://bucket/prefix",
        "s3://",
        "s3:///prefix",
        "s3://Upper-Case/x",
        "s3://ab/x",
        "s3://bucket_underscore/x",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
        "s3://bucket/x?versionId=1",
        "s3://bucket/x#frag",
    ],
)
def test_parse_rejects_malformed_urls_naming_them(url: str):
    with pytest.raises(ValueError, match="malformed S3 URL") as caught:
        S3Target.parse(url)
    assert url in str(caught.value)


def test_parse_never_echoes_credentials():
    with pytest.raises(ValueError, match="credentials") as caught:
        S3Target.parse(f"s3://{ACCESS_KEY}:{SECRET}@bucket/x")
    assert SECRET not in str(caught.value)
    assert ACCESS_KEY not in str(caught.value)
    assert "bucket/x" in str(caught.value)


def test_target_defaults_and_keys():
    target = S3Target(BUCKET)
    assert target.prefix == "quantbeat/backtests"
    assert target.endpoint_url is None
    assert target.region is None
    assert target.key("bt-1", "report.html") == "quantbeat/backtests/bt-1/report.html"
    assert S3Target(BUCKET, prefix="/a/b/").prefix == "a/b"
    with pytest.raises(ValueError, match="bucket name"):
        S3Target("x")


# ---------------------------------------------------------------------------------------------
# Helpers


def test_artifacts_for_builds_the_standard_set():
    artifacts = _artifacts()
    assert list(artifacts) == [
        "report.html",
        "report.png",
        "trades.csv",
        "equity.csv",
        "metrics.json",
    ]
    assert artifacts["report.html"].decode("utf-8").count("삼성전자") == 1
    text = artifacts["metrics.json"].decode("utf-8")
    assert text.startswith("{\n  ")
    assert json.loads(text) == {"total_return": 0.25, "sharpe": 1.5, "calmar": None, "trades": 2}


def test_artifacts_for_without_png_and_with_numpy_values():
    import numpy as np

    artifacts = artifacts_for(
        "<html></html>", None, "", "", {"n": np.int64(3), "x": np.float64("inf"), "a": np.ones(2)}
    )
    assert "report.png" not in artifacts
    assert json.loads(artifacts["metrics.json"]) == {"n": 3, "x": None, "a": [1.0, 1.0]}


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("report.html", "text/html; charset=utf-8"),
        ("REPORT.HTML", "text/html; charset=utf-8"),
        ("report.png", "image/png"),
        ("trades.csv", "text/csv"),
        ("metrics.json", "application/json"),
        ("data.bin", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ],
)
def test_content_type_for(name: str, content_type: str):
    assert content_type_for(name) == content_type
