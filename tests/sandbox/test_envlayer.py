"""The environment layer: requirements found, downloaded on the host, installed offline, cached by hash."""

from __future__ import annotations

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.envlayer import layer_key, requirement_files, requirement_lines


def test_requirements_from_files_and_pyproject(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r requirements/base.txt\n-e .\nsix>=1.16  # pinned loosely\n")
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("attrs\n# comment\n\n./local-dir\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["iniconfig"]\n'
        '[project.optional-dependencies]\ntest = ["pluggy"]\ndocs = ["sphinx"]\n'
        '[dependency-groups]\ndev = ["packaging", {include-group = "test"}]\n'
    )
    files = requirement_files(tmp_path, [])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "pyproject.toml",
        "requirements/base.txt",
        "requirements.txt",
    ]
    assert requirement_lines(tmp_path, files) == ["iniconfig", "pluggy", "packaging", "attrs", "six>=1.16"]
    assert requirement_files(tmp_path, ["requirements/base.txt"]) == [tmp_path / "requirements/base.txt"]


def test_key_changes_with_content_base_and_command(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("six\n")
    key = layer_key([req], tmp_path, "sha256:base", "pip install")
    assert key == layer_key([req], tmp_path, "sha256:base", "pip install")
    assert key != layer_key([req], tmp_path, "sha256:other", "pip install")
    assert key != layer_key([req], tmp_path, "sha256:base", "pip install -U")
    req.write_text("six==1.17.0\n")
    assert key != layer_key([req], tmp_path, "sha256:base", "pip install")


@pytest.mark.docker
@pytest.mark.slow
def test_layer_is_built_offline_and_reused(sandbox_image, tmp_path):
    from dsagent.sandbox.container import DockerSandbox
    from dsagent.sandbox.daemon import connect
    from dsagent.sandbox.envlayer import ensure_env_image

    (tmp_path / "requirements-test.txt").write_text("six\n")
    client = connect()
    settings = SandboxSettings()
    lines: list[str] = []
    tag = ensure_env_image(client, tmp_path, settings, lines.append)
    try:
        assert tag.startswith("dsagent-env:")
        assert any("without network" in line for line in lines)
        assert client.images.get(tag).labels["dsagent.image"] == "env"
        again: list[str] = []
        assert ensure_env_image(client, tmp_path, settings, again.append) == tag
        assert again == [f"{tag} is up to date"]
        with DockerSandbox(tmp_path, settings) as box:  # picks the layer by itself
            assert box.image == tag
            result = box.exec("python3 -c 'import six; print(six.__name__)'")
            assert result.output == "six\n", result.output
    finally:
        client.images.remove(tag, force=True)
