"""Validation of names, handlers and configuration: clear errors, nothing accepted."""

from __future__ import annotations

import pytest

from faasbox.config import Limits, Settings
from faasbox.errors import InvalidParameterError
from faasbox.model import FunctionConfig, FunctionVersion, validate_handler, validate_name


@pytest.mark.parametrize("name", ["a", "hello-world_1", "A" * 64])
def test_valid_names_pass(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "../etc", "fn:1", "é"])
def test_invalid_names_say_what_is_wrong(name: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid function name"):
        validate_name(name)


@pytest.mark.parametrize("handler", ["app.handler", "pkg.sub.mod.fn", "_m.f1"])
def test_valid_handlers_pass(handler: str) -> None:
    assert validate_handler(handler) == handler


@pytest.mark.parametrize("handler", ["app", ".x", "app.", "a..b", "1app.f", "app.f-g", ""])
def test_invalid_handlers_are_refused(handler: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"module\.function"):
        validate_handler(handler)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"memory_mb": 127}, "memory_mb=127 is out of range 128-10240"),
        ({"memory_mb": 10241}, "out of range"),
        ({"timeout_s": 0}, "timeout_s=0 is out of range 1-900"),
        ({"timeout_s": 901}, "out of range"),
        ({"environment": {"1BAD": "x"}}, "invalid environment variable name"),
        ({"environment": {"AWS_LAMBDA_FUNCTION_NAME": "x"}}, "reserved"),
        ({"environment": {"BIG": "x" * 5000}}, "over the 4096-byte limit"),
        ({"reserved_concurrency": -1}, "reserved_concurrency"),
    ],
)
def test_configuration_out_of_range_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        FunctionConfig(handler="app.handler", **changes).validate(Limits())


def test_defaults_are_lambdas() -> None:
    config = FunctionConfig(handler="app.handler").validate(Limits())
    assert (config.memory_mb, config.timeout_s) == (128, 3)


def test_unknown_config_field_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="unknown configuration fields"):
        FunctionConfig.from_dict({"handler": "a.b", "memroy": 1})


def test_revision_changes_with_code_config_and_version() -> None:
    base = FunctionVersion("f", "$LATEST", "a" * 64, None, FunctionConfig("a.b"), 0.0)
    same = FunctionVersion("f", "$LATEST", "a" * 64, None, FunctionConfig("a.b"), 9.0)
    other_code = FunctionVersion("f", "$LATEST", "b" * 64, None, FunctionConfig("a.b"), 0.0)
    other_cfg = FunctionVersion("f", "$LATEST", "a" * 64, None, FunctionConfig("a.b", 256), 0.0)
    published = FunctionVersion("f", "1", "a" * 64, None, FunctionConfig("a.b"), 0.0)
    assert base.revision == same.revision
    assert len({base.revision, other_code.revision, other_cfg.revision, published.revision}) == 4
    assert base.content_sha256 == published.content_sha256


def test_settings_read_the_environment_and_overrides_win(tmp_path) -> None:
    env = {"FAASBOX_HOME": str(tmp_path), "FAASBOX_PORT": "9000", "FAASBOX_KEEP_ALIVE_S": "2.5"}
    settings = Settings.from_env(env)
    assert settings.home == tmp_path and settings.port == 9000 and settings.keep_alive_s == 2.5
    assert Settings.from_env(env, port=1234).port == 1234
    with pytest.raises(ValueError, match="FAASBOX_PORT"):
        Settings.from_env({"FAASBOX_PORT": "abc"})


def test_endpoint_follows_host_and_port_unless_given() -> None:
    assert Settings.from_env({}, port=9000).endpoint == "http://127.0.0.1:9000"
    assert Settings.from_env({"FAASBOX_HOST": "0.0.0.0"}).endpoint == "http://127.0.0.1:8642"
    given = {"FAASBOX_ENDPOINT": "http://fb.example:1"}
    assert Settings.from_env(given, port=9000).endpoint == "http://fb.example:1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timeout_s": True}, "timeout_s=True"),
        ({"memory_mb": 256.0}, "memory_mb=256.0"),
        ({"description": 5}, "description must be a string"),
        ({"environment": ["x"]}, "environment must be an object"),
    ],
)
def test_wrong_types_are_refused_with_the_field_named(changes: dict, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        FunctionConfig.from_dict({"handler": "a.b", **changes}).validate(Limits())


def test_operator_defaults_apply_to_new_functions() -> None:
    limits = Limits(memory_default_mb=512, timeout_default_s=30)
    config = FunctionConfig.from_dict({"handler": "a.b"}, limits)
    assert (config.memory_mb, config.timeout_s) == (512, 30)


def test_description_and_reserved_concurrency_keep_the_pool_revision() -> None:
    base = FunctionVersion("f", "$LATEST", "a" * 64, None, FunctionConfig("a.b"), 0.0)
    described = FunctionVersion(
        "f", "$LATEST", "a" * 64, None,
        FunctionConfig("a.b", description="new", reserved_concurrency=5), 0.0,
    )
    assert base.revision == described.revision  # warm sandboxes stay
    assert base.content_sha256 != described.content_sha256  # publish sees the description
