"""Every config layer and its precedence, with real files in a temporary HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsagent.config import ConfigError, describe_fields, load_settings, parse_model_spec, user_config_path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".config" / "dsagent").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for key in list(__import__("os").environ):
        if key.startswith("DSAGENT_"):
            monkeypatch.delenv(key)
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults(home: Path, git_repo: Path) -> None:
    loaded = load_settings(git_repo)
    assert loaded.settings.agent.max_steps == 50
    assert loaded.settings.sandbox.network is False
    assert loaded.sources == {}


def test_each_layer_overrides_the_one_below(home: Path, git_repo: Path, monkeypatch) -> None:
    user = write(home / ".config/dsagent/config.toml", "[agent]\nmax_steps = 10\nthinking = false\n"
                 "[sandbox]\ncpus = 1.5\nmemory = '1g'\n[ui]\ntheme = 'textual-light'\n")
    repo_file = write(git_repo / ".dsagent.toml", "[agent]\nmax_steps = 20\n[sandbox]\ncpus = 3\nmemory = '2g'\n")
    monkeypatch.setenv("DSAGENT_SANDBOX__CPUS", "4")
    monkeypatch.setenv("DSAGENT_SANDBOX__MEMORY", "3g")
    loaded = load_settings(git_repo, {"sandbox.memory": "8g"})
    s = loaded.settings
    assert s.ui.theme == "textual-light" and loaded.sources["ui.theme"] == str(user)
    assert s.agent.thinking is False
    assert s.agent.max_steps == 20 and loaded.sources["agent.max_steps"] == str(repo_file)
    assert s.sandbox.cpus == 4.0 and loaded.sources["sandbox.cpus"].startswith("environment")
    assert s.sandbox.memory == "8g" and loaded.sources["sandbox.memory"] == "command line"


def test_repo_file_found_from_a_subdirectory(home: Path, git_repo: Path) -> None:
    write(git_repo / ".dsagent.toml", "[agent]\napproval = 'ask'\n")
    sub = git_repo / "src" / "pkg"
    sub.mkdir(parents=True)
    assert load_settings(sub).settings.agent.approval == "ask"


def test_xdg_config_home_is_respected(home: Path, tmp_path: Path, git_repo: Path, monkeypatch) -> None:
    xdg = tmp_path / "xdg"
    write(xdg / "dsagent/config.toml", "[agent]\nmax_steps = 7\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert user_config_path() == xdg / "dsagent/config.toml"
    assert load_settings(git_repo).settings.agent.max_steps == 7


def test_env_nested_sampling(home: Path, git_repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("DSAGENT_MODEL__SAMPLING__TEMPERATURE", "0")
    loaded = load_settings(git_repo)
    assert loaded.settings.model.sampling.temperature == 0.0
    assert "model.sampling.temperature" in loaded.sources


def test_toml_syntax_error_names_file_and_line(home: Path, git_repo: Path) -> None:
    bad = write(git_repo / ".dsagent.toml", "[agent]\nmax_steps = 3\nthinking = \n")
    with pytest.raises(ConfigError) as info:
        load_settings(git_repo)
    message = str(info.value)
    assert message.startswith(f"{bad}:3:") and "\n" not in message


def test_wrong_type_names_file_line_and_field(home: Path, git_repo: Path) -> None:
    bad = write(home / ".config/dsagent/config.toml", "# comment\n[sandbox]\nnetwork = false\npids = 'many'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(git_repo)
    assert str(info.value).startswith(f"{bad}:4: sandbox.pids:")


def test_unknown_key_is_reported(home: Path, git_repo: Path) -> None:
    write(git_repo / ".dsagent.toml", "[agent]\nmax_stepz = 3\n")
    with pytest.raises(ConfigError, match=r":2: agent.max_stepz: unknown setting"):
        load_settings(git_repo)


def test_bad_env_value_names_the_variable(home: Path, git_repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("DSAGENT_AGENT__MAX_STEPS", "lots")
    with pytest.raises(ConfigError, match="DSAGENT_AGENT__MAX_STEPS"):
        load_settings(git_repo)


def test_every_field_has_a_docstring(home: Path, git_repo: Path) -> None:
    rows = describe_fields(load_settings(git_repo).settings, {})
    assert len(rows) > 20
    assert all(doc for _, _, _, doc in rows), [key for key, _, _, doc in rows if not doc]


def test_api_key_is_never_shown(home: Path, git_repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("DSAGENT_MODEL__API_KEY", "sk-secret")
    rows = describe_fields(load_settings(git_repo).settings, {})
    assert "sk-secret" not in repr(rows)


def test_model_spec() -> None:
    assert parse_model_spec("local:/m") == {"model.backend": "local", "model.path": "/m"}
    assert parse_model_spec("openai:http://h:1/v1#ds")["model.name"] == "ds"
    with pytest.raises(ConfigError):
        parse_model_spec("gguf:/x")
