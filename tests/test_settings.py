"""Settings: the recipe file, environment overrides nested with "__", secrets kept out of
repr, bad values named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syllabus.services.runtime import load_settings

from .conftest import ROOT


def test_recipe_then_environment_override(monkeypatch):
    monkeypatch.setenv("SYLLABUS_CONFIG", str(ROOT / "syllabus.example.toml"))
    monkeypatch.setenv("SYLLABUS_INGEST__MAX_TOKENS", "512")
    monkeypatch.setenv("SYLLABUS_NATS__URL", "nats://nats.example:4222")
    s = load_settings()
    assert s.ingest.max_tokens == 512  # environment beats the recipe
    assert s.ingest.overlap_tokens == 48  # from the recipe
    assert s.nats.url == "nats://nats.example:4222"
    assert s.bus.backoff == [1.0, 5.0, 15.0, 30.0]


def test_secrets_never_show_in_repr(monkeypatch):
    monkeypatch.setenv("SYLLABUS_STORE__SECRET_KEY", "very-secret-value")
    monkeypatch.setenv("SYLLABUS_HTTP__TOKEN", "another-secret")
    s = load_settings()
    assert s.store.secret_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(s) and "another-secret" not in str(s)


def test_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("SYLLABUS_INGEST__OVERLAP_TOKENS", "900")
    with pytest.raises(ValidationError, match="overlap_tokens"):
        load_settings()


def test_missing_recipe_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SYLLABUS_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_settings()


def test_unknown_keys_are_errors_that_name_them(monkeypatch, tmp_path):
    """A misplaced key (json_mode under [teacher], not [teacher.options]) or a misspelt
    section was ignored without a word; now each is an error naming it."""
    from click.testing import CliRunner

    from syllabus.services.cli import main

    recipe = tmp_path / "syllabus.toml"
    recipe.write_text('[teacher]\nkind = "openai"\nmodel = "m"\njson_mode = "off"\n')
    monkeypatch.setenv("SYLLABUS_CONFIG", str(recipe))
    with pytest.raises(ValidationError, match="teacher.json_mode"):
        load_settings()
    res = CliRunner().invoke(main, ["plugins"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert ("teacher.json_mode: not a setting of [teacher] (a teacher plugin's own options "
            "go under [teacher.options])") in res.output

    recipe.write_text('[teacher]\nkind = "openai"\nmodel = "m"\n[teacher.options]\n'
                      'json_mode = "off"\n')
    assert load_settings().teacher.options == {"json_mode": "off"}

    recipe.write_text('[teachr]\nkind = "openai"\n')
    with pytest.raises(ValueError, match=r"unknown setting\(s\) 'teachr'"):
        load_settings()

    monkeypatch.delenv("SYLLABUS_CONFIG")
    monkeypatch.setenv("SYLLABUS_INGEST__MAX_TOKEN", "512")  # max_tokens, misspelt
    with pytest.raises(ValidationError, match="ingest.max_token"):
        load_settings()
