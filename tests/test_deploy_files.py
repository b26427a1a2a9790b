"""app.json and the systemd units say what the Procfile and the settings say.

Every Procfile process has a Heroku formation (release runs from the Procfile itself) and a
systemd unit running the same command; every environment variable they name is one the app
reads (models/settings.py, or gunicorn.conf.py for the web server's own)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

from tests.stack import ROOT

UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = "/opt/helpline/.venv/bin/"


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def variables_the_app_reads() -> set[str]:
    """Names passed to the settings readers (and gunicorn.conf.py's os.environ.get)."""
    names: set[str] = set()
    for path in (ROOT / "models" / "settings.py", ROOT / "gunicorn.conf.py"):
        names |= set(re.findall(r"""["']([A-Z][A-Z0-9_]{2,})["']""", path.read_text()))
    return names


def unit(path) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """A systemd unit as `Section.Key` → values (keys may repeat; no interpolation)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return entries


def test_app_json_matches_procfile_and_settings():
    app = json.loads((ROOT / "app.json").read_text())
    processes = procfile()
    assert "release" in processes, "Heroku runs migrations from the Procfile's release"
    assert set(app["formation"]) == set(processes) - {"release"}
    plans = {addon["plan"].split(":")[0] for addon in app["addons"]}
    assert {"heroku-postgresql", "heroku-redis"} <= plans
    known = variables_the_app_reads()
    for name, spec in app["env"].items():
        assert name in known, f"app.json names {name}, which nothing reads"
        assert spec["description"].strip(), f"{name} has no description"
    # The add-ons provide these two; the app reads them under exactly these names.
    assert {"DATABASE_URL", "REDIS_URL"} <= known


def test_systemd_units_run_the_procfile_commands():
    processes = procfile()
    units = {path.name: unit(path) for path in UNITS.glob("*.service")}
    by_process = {
        "web": "helpline-web.service",
        "worker": "helpline-worker@.service",
        "files": "helpline-files.service",
        "release": "helpline-release.service",
    }
    assert set(by_process) == set(processes), "a Procfile process has no unit (or vice versa)"
    for process, name in by_process.items():
        entries = units[name]
        (exec_start,) = entries["Service.ExecStart"]
        assert exec_start.startswith(VENV_BIN), exec_start
        command = shlex.split(exec_start[len(VENV_BIN) :])
        expected = shlex.split(processes[process])
        assert command[: len(expected)] == expected, (name, command, expected)
        # Celery's %h must reach Celery: systemd would expand a single %h to a home directory.
        assert not re.search(r"(?<!%)%h", exec_start), exec_start
        assert entries["Service.EnvironmentFile"] == ["/etc/helpline/helpline.env"]
        if process != "release":
            assert entries["Service.Restart"] == ["always"], name
            assert entries["Install.WantedBy"] == ["multi-user.target"], name
    assert "helpline-release.service" in units["helpline-web.service"]["Unit.Requires"][0]


def test_example_environment_names_only_known_variables():
    known = variables_the_app_reads()
    text = (ROOT / "deploy" / "helpline.env.example").read_text()
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert names and not set(names) - known, set(names) - known
    for name, values in (
        (n, v)
        for u in UNITS.glob("*.service")
        for n, v in unit(u).items()
        if n.endswith("Environment")
    ):
        for value in values:
            assert value.split("=", 1)[0] in known, (name, value)


def test_make_run_serves_on_port_8000_or_port():
    """`make run` starts the Procfile through honcho, which gives the first process type
    PORT=5000 unless told a base port: the README's localhost:8000 must be where the web
    process listens, and $PORT must still win (a dry run: nothing is started)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MAKEFLAGS", "MAKELEVEL")}

    def honcho_line(**extra: str) -> list[str]:
        out = subprocess.run(
            ["make", "-n", "run"], cwd=ROOT, env=env | extra, capture_output=True, text=True
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("honcho start")]
        assert lines, out.stdout + out.stderr
        return shlex.split(lines[0])

    for port, extra in (("8000", {}), ("9123", {"PORT": "9123"})):
        words = honcho_line(**extra)
        assert words[words.index("-p") + 1] == port, words
    readme = (ROOT / "README.md").read_text()
    assert "http://localhost:8000/" in readme and "(default 8000)" in readme
