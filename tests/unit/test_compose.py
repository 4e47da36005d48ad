"""The production container files: docker-compose.yml, .env.example, the Dockerfiles and .dockerignore.

No Docker engine is needed: ``docker-compose config`` validates the compose file, the rest is read
as YAML (interpolated the way compose does), and the slow test builds each image's Python
environment in a virtual environment and runs its start command's check form.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from mlaas.adapters.queue import QUEUES
from mlaas.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
APP_SERVICES = ("api", "worker-train", "worker-evaluate", "worker-drift", "beat")
WORKER_SERVICES = ("worker-train", "worker-evaluate", "worker-drift")
SERVICES = {"minio", "minio-init", "redis", "postgres", "mlflow", "flower", *APP_SERVICES}
PUBLISHED = {"api": 8000, "mlflow": 5000, "minio": 9000, "flower": 5555}
LONG_RUNNING_RESTARTS = {"always", "unless-stopped", "on-failure"}
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# -- reading the files ----------------------------------------------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (``$$``, ``$VAR``, ``${VAR}``, ``${VAR-default}``, ``${VAR:-default}``)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        if match.group(2) == ":-":
            return env.get(name) or match.group(3)
        if match.group(2) == "-":
            return env.get(name, match.group(3))
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def compose_variables() -> dict[str, str | None]:
    """Variables docker-compose.yml reads from .env, with their defaults (None: no default)."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(COMPOSE_FILE.read_text()):
        name = match.group(1) or match.group(4)
        if name:
            found[name] = match.group(3) if match.group(2) == ":-" else None
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or a list of KEY=value)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def option(argv: list[str], *names: str) -> str:
    """The value of the first of ``names`` in an argument list (``--name value`` or ``--name=value``)."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name:
                return argv[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    raise AssertionError(f"none of {names} in {argv}")


def one_shot(services: dict[str, Any]) -> set[str]:
    """Services others wait for to *complete* (init jobs), which need no health check."""
    return {
        name
        for service in services.values()
        for name, dep in (service.get("depends_on") or {}).items()
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully"
    }


@dataclasses.dataclass
class Dockerfile:
    path: Path
    instructions: list[tuple[str, str]]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        instructions: list[tuple[str, str]] = []
        pending = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            name, _, args = (pending + line).partition(" ")
            instructions.append((name.upper(), args.strip()))
            pending = ""
        assert not pending, f"{path.name}: dangling line continuation"
        return cls(path, instructions)

    def all(self, name: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == name]

    def last(self, name: str) -> str:
        found = self.all(name)
        assert found, f"{self.path.name} has no {name}"
        return found[-1]

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"{self.path.name}: use ENV KEY=value, not {args!r}"
                values[key] = value
        return values

    @property
    def cmd(self) -> list[str]:
        cmd = json.loads(self.last("CMD"))  # exec form: a JSON array, so signals reach the process
        assert isinstance(cmd, list) and all(isinstance(part, str) for part in cmd)
        return cmd

    def copies(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of each COPY from the build context."""
        result = []
        for args in self.all("COPY"):
            tokens = shlex.split(args)
            assert not any(t.startswith("--from") for t in tokens), "multi-stage COPY is not handled here"
            paths = [t for t in tokens if not t.startswith("--")]
            result.append((paths[:-1], paths[-1]))
        return result

    def pip_install(self) -> list[str]:
        """The arguments of the single ``RUN pip install ...`` step."""
        runs = [shlex.split(args) for args in self.all("RUN") if "pip install" in args]
        assert len(runs) == 1, f"{self.path.name}: expected one RUN pip install, found {len(runs)}"
        assert runs[0][:2] == ["pip", "install"], f"{self.path.name}: RUN must be just the pip install"
        return runs[0][2:]


def dockerignore_excludes() -> list[str]:
    """Name patterns .dockerignore drops at any depth (``**/NAME`` lines)."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line[3:] for line in lines if line.startswith("**/")]


def copy_image_files(dockerfile: Dockerfile, rootfs: Path) -> Path:
    """Lay out what the Dockerfile COPYs under ``rootfs`` as the image would; return its WORKDIR there."""
    workdir = PurePosixPath(dockerfile.last("WORKDIR"))
    ignore = shutil.ignore_patterns(*dockerignore_excludes())
    for sources, dest in dockerfile.copies():
        target = rootfs / (workdir / dest).relative_to("/")
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    app_dir = rootfs / workdir.relative_to("/")
    app_dir.mkdir(parents=True, exist_ok=True)
    return app_dir


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def services(env_example: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml's services, interpolated with the .env.example values."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(document, env_example)["services"]


@pytest.fixture(scope="module")
def dockerfiles() -> dict[str, Dockerfile]:
    return {name: Dockerfile.parse(ROOT / name) for name in ("Dockerfile.api", "Dockerfile.worker")}


def dockerfile_of(service: dict[str, Any]) -> Dockerfile | None:
    build = service.get("build")
    if build is None:
        return None
    name = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    return Dockerfile.parse(ROOT / name)


# -- docker-compose -------------------------------------------------------------------------------
def _docker_compose(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose: `make system-deps`)")
    # Host variables must not leak into the interpolation under test.
    env = {key: value for key, value in os.environ.items() if key not in compose_variables()}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_docker_compose_accepts_the_file_with_the_example_env_and_with_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    for env_file in (ENV_EXAMPLE, empty):
        result = _docker_compose(["--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"], ROOT)
        assert result.returncode == 0, f"{env_file.name}: {result.stderr}"
        assert "is not set" not in result.stderr, result.stderr

    # The validator is not a rubber stamp: a misspelt key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healthchek:", 1))
    result = _docker_compose(["--env-file", str(ENV_EXAMPLE), "-f", str(broken), "config", "-q"], tmp_path)
    assert result.returncode != 0 and "healthchek" in result.stderr


def test_every_variable_has_a_default_and_is_documented_in_env_example(env_example: dict[str, str]) -> None:
    variables = compose_variables()
    assert variables, "expected ${VAR:-default} interpolation in docker-compose.yml"
    assert not [name for name, default in variables.items() if default is None], "variables without a default"
    assert sorted(set(variables) - set(env_example)) == [], "missing from .env.example"
    assert sorted(set(env_example) - set(variables)) == [], ".env.example lists variables compose never reads"


# -- services and their wiring --------------------------------------------------------------------
def test_the_stack_has_every_service(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_app_environment_holds_only_real_settings(services: dict[str, Any]) -> None:
    fields = {field.name for field in dataclasses.fields(Settings)} - {"extra"}
    for name in APP_SERVICES:
        env = environment(services[name])
        unknown = [key for key in env if key.startswith(PREFIX) and key[len(PREFIX):].lower() not in fields]
        assert unknown == [], f"{name}: not Settings fields: {unknown}"
        settings = Settings.from_env(env)
        assert settings.visibility_timeout == 43200
        assert settings.s3_access_key and settings.s3_secret_key.reveal()


def test_app_settings_point_at_compose_services(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        settings = Settings.from_env(environment(services[name]))
        for url, service, port in ((settings.redis_url, "redis", 6379),
                                   (settings.mlflow_tracking_uri, "mlflow", 5000),
                                   (settings.s3_endpoint, "minio", 9000)):
            parsed = urlparse(url)
            assert (parsed.hostname, parsed.port) == (service, port), f"{name}: {url}"


def test_each_client_gets_an_s3_identity_for_its_own_buckets(services: dict[str, Any]) -> None:
    init = environment(services["minio-init"])
    settings = Settings.from_env(environment(services["api"]))
    assert (init["APP_ACCESS_KEY"], init["APP_SECRET_KEY"]) == (settings.s3_access_key, settings.s3_secret_key)
    assert set(settings.buckets) <= set(init["APP_BUCKETS"].split())

    mlflow = environment(services["mlflow"])
    assert (init["MLFLOW_ACCESS_KEY"], init["MLFLOW_SECRET_KEY"]) == (
        mlflow["AWS_ACCESS_KEY_ID"], mlflow["AWS_SECRET_ACCESS_KEY"])
    argv = shlex.split(command(services["mlflow"])[-1])
    assert option(argv, "--artifacts-destination") == f"s3://{init['MLFLOW_BUCKET']}"
    root_user = environment(services["minio"])["MINIO_ROOT_USER"]
    assert root_user not in {settings.s3_access_key, mlflow["AWS_ACCESS_KEY_ID"]}, "clients must not be root"


def test_each_worker_service_consumes_exactly_one_queue_and_all_are_consumed(services: dict[str, Any]) -> None:
    consumed = []
    for name in WORKER_SERVICES:
        argv = command(services[name])
        assert argv[:4] == ["celery", "-A", "worker.celery_app:app", "worker"], argv
        queues = option(argv, "-Q", "--queues").split(",")
        assert len(queues) == 1, f"{name} consumes {queues}"
        assert option(argv, "--concurrency", "-c") == "1"
        assert option(argv, "--hostname", "-n") == f"{queues[0]}@%h"
        # The health check pings this worker's own node name.
        assert f'"{queues[0]}@$HOSTNAME"' in services[name]["healthcheck"]["test"][-1]
        consumed += queues
    assert sorted(consumed) == sorted(QUEUES)


def test_ports_are_published(services: dict[str, Any]) -> None:
    for name, port in PUBLISHED.items():
        container_ports = {int(str(spec).rsplit(":", 1)[-1].split("/")[0]) for spec in services[name].get("ports", [])}
        assert port in container_ports, f"{name} does not publish {port}"
    unpublished = {"redis", "postgres"} & {name for name, service in services.items() if service.get("ports")}
    assert not unpublished, f"{unpublished} must stay on the internal network"


def test_redis_persists_an_append_only_file_on_a_volume(services: dict[str, Any]) -> None:
    argv = command(services["redis"])
    assert option(argv, "--appendonly") == "yes"
    assert option(argv, "--appendfsync") == "everysec"
    assert any(str(volume).endswith(":/data") for volume in services["redis"]["volumes"])


def test_beat_runs_once_and_keeps_its_schedule_on_a_volume(services: dict[str, Any]) -> None:
    beat = services["beat"]
    assert "scale" not in beat
    assert int((beat.get("deploy") or {}).get("replicas", 1)) == 1
    argv = command(beat)
    assert argv[:4] == ["celery", "-A", "worker.celery_app:app", "beat"]
    schedule_dir = PurePosixPath(option(argv, "--schedule", "-s")).parent
    mounts = {PurePosixPath(str(volume).split(":")[1]) for volume in beat.get("volumes", [])}
    assert schedule_dir in mounts
    others = [name for name, service in services.items() if name != "beat" and "beat" in command(service)]
    assert others == [], f"beat also runs in {others}"


def test_long_running_services_have_health_checks_and_restart_policies(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in one_shot(services):
            assert service.get("restart", "no") not in {"always", "unless-stopped"}, f"{name} would loop"
            continue
        dockerfile = dockerfile_of(service)
        has_check = "healthcheck" in service or (dockerfile is not None and bool(dockerfile.all("HEALTHCHECK")))
        assert has_check, f"{name} has no health check"
        if "healthcheck" in service:
            assert not service["healthcheck"].get("disable"), name
        assert service.get("restart") in LONG_RUNNING_RESTARTS, f"{name}: restart {service.get('restart')}"


def test_dependencies_wait_for_health_or_completion(services: dict[str, Any]) -> None:
    jobs = one_shot(services)
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in jobs else "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {dependency}: {spec}"
    for name in APP_SERVICES:
        assert "redis" in services[name]["depends_on"], name


def test_mlflow_server_command(services: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    assert mlflow["image"] == "ghcr.io/mlflow/mlflow:v3.17.2"
    script = command(mlflow)[-1]
    assert re.search(r"pip install .*psycopg2-binary==\S+.*boto3==\S+", script)
    argv = shlex.split(script.split("exec ", 1)[1])
    assert argv[:2] == ["mlflow", "server"]
    assert option(argv, "--host") == "0.0.0.0" and option(argv, "--port") == "5000"
    assert "mlflow:5000" in option(argv, "--allowed-hosts").split(",")
    backend = urlparse(option(argv, "--backend-store-uri"))
    assert (backend.scheme, backend.hostname) == ("postgresql+psycopg2", "postgres")
    postgres = environment(services["postgres"])
    assert (backend.username, backend.password, backend.path) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"])
    env = environment(mlflow)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert urlparse(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"


FAKE_MC = textwrap.dedent("""\
    import json, os, pathlib, shutil, sys
    state = pathlib.Path(os.environ["MC_STATE"])
    args = sys.argv[1:]
    with open(state / "log", "a") as log:
        log.write(json.dumps(args) + "\\n")
    attached = state / "attached.json"
    links = json.loads(attached.read_text()) if attached.exists() else {}
    if args[:3] == ["admin", "policy", "create"]:
        shutil.copy(args[5], state / ("policy-" + args[4] + ".json"))
    elif args[:3] == ["admin", "policy", "attach"]:
        user = args[args.index("--user") + 1]
        if args[4] in links.get(user, []):
            sys.exit("mc: <ERROR> The specified policy change is already in effect.")
        links.setdefault(user, []).append(args[4])
        attached.write_text(json.dumps(links))
    elif args[:3] == ["admin", "user", "info"]:
        print("AccessKey: " + args[4] + "\\nPolicyName: " + ",".join(links.get(args[4], [])))
""")


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_minio_init_script_creates_buckets_and_scoped_users(services: dict[str, Any], tmp_path: Path,
                                                            shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    init = services["minio-init"]
    assert init["entrypoint"][-1] == "-c"
    script = command(init)[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(f"#!{sys.executable}\n{FAKE_MC}")
    mc.chmod(0o755)
    env = {**environment(init), "PATH": f"{bin_dir}:{os.environ['PATH']}", "MC_STATE": str(tmp_path)}
    for attempt in (1, 2):  # a second run (docker compose up again) must succeed too
        result = subprocess.run([shell, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"run {attempt}: {result.stdout}{result.stderr}"

    calls = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert {call[-1] for call in calls if call[0] == "mb"} == {"local/datasets", "local/drift", "local/mlflow"}
    users = {call[4]: call[5] for call in calls if call[:3] == ["admin", "user", "add"]}  # ... local USER SECRET
    app = Settings.from_env(environment(services["api"]))
    mlflow = environment(services["mlflow"])
    assert users == {app.s3_access_key: app.s3_secret_key.reveal(),
                     mlflow["AWS_ACCESS_KEY_ID"]: mlflow["AWS_SECRET_ACCESS_KEY"]}

    def buckets_of(policy: str) -> set[str]:
        document = json.loads((tmp_path / f"policy-{policy}.json").read_text())
        return {resource for statement in document["Statement"] for resource in statement["Resource"]}

    assert buckets_of("mlaas-app") == {"arn:aws:s3:::*", "arn:aws:s3:::datasets", "arn:aws:s3:::datasets/*",
                                       "arn:aws:s3:::drift", "arn:aws:s3:::drift/*"}
    assert buckets_of("mlflow-artifacts") == {"arn:aws:s3:::*", "arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    links = json.loads((tmp_path / "attached.json").read_text())
    assert links == {app.s3_access_key: ["mlaas-app"], mlflow["AWS_ACCESS_KEY_ID"]: ["mlflow-artifacts"]}


# -- Dockerfiles ----------------------------------------------------------------------------------
def test_dockerfiles_build_a_slim_non_root_image(dockerfiles: dict[str, Dockerfile]) -> None:
    for name, dockerfile in dockerfiles.items():
        assert dockerfile.last("FROM") == "python:3.11-slim", name
        user = dockerfile.last("USER")
        assert user.split(":")[0] not in {"root", "0"}, name
        env = dockerfile.env
        assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1", name
        assert env["TMPDIR"] == env["MLAAS_TMP_DIR"], name
        # The temp dir is created for the runtime user.
        assert any(env["TMPDIR"] in args and f"-o {user}" in args for args in dockerfile.all("RUN")), name
        pip_args = dockerfile.pip_install()
        assert "--no-cache-dir" in pip_args and option(pip_args, "-r") == "requirements.txt", name


def test_api_image_runs_gunicorn_with_a_health_check_and_without_worker_code(
        dockerfiles: dict[str, Dockerfile]) -> None:
    api = dockerfiles["Dockerfile.api"]
    assert api.cmd == ["gunicorn", "-c", "python:mlaas.api.gunicorn_conf", "--bind", "0.0.0.0:8000",
                       "--workers", "2", "--timeout", "120", "mlaas.api.app:create_app()"]
    assert "/health" in api.last("HEALTHCHECK") and "8000" in api.last("HEALTHCHECK")
    copied = {source.rstrip("/") for sources, _ in api.copies() for source in sources}
    assert copied == {"requirements.txt", "mlaas"}


def test_worker_image_runs_the_celery_app_of_the_compose_commands(
        dockerfiles: dict[str, Dockerfile], services: dict[str, Any]) -> None:
    worker = dockerfiles["Dockerfile.worker"]
    cmd = worker.cmd
    assert cmd[:4] == ["celery", "-A", "worker.celery_app:app", "worker"]
    assert sorted(option(cmd, "-Q").split(",")) == sorted(QUEUES)
    copied = {source.rstrip("/") for sources, _ in worker.copies() for source in sources}
    assert copied == {"requirements.txt", "mlaas", "worker"}
    for name in (*WORKER_SERVICES, "beat"):
        built_from = dockerfile_of(services[name])
        assert built_from is not None and built_from.path.name == worker.path.name, name
        assert command(services[name])[:3] == cmd[:3], name


def test_dockerignore_lets_in_exactly_what_the_dockerfiles_copy(dockerfiles: dict[str, Dockerfile]) -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()]
    patterns = [line for line in lines if not line.startswith("#")]
    assert patterns[0] == "*", "start from nothing, then re-include"
    included = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    copied = {source.rstrip("/") for d in dockerfiles.values() for sources, _ in d.copies() for source in sources}
    assert included == copied
    assert {"__pycache__", ".ruff_cache"} <= set(dockerignore_excludes())


# -- the images' Python environments (slow: one pip install) --------------------------------------
@pytest.fixture(scope="module")
def venv_for(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Dockerfile, Path], Path]]:
    """A virtual environment per distinct pip install step, built with the Dockerfile's arguments."""
    made: dict[str, Path] = {}

    def get(dockerfile: Dockerfile, app_dir: Path) -> Path:
        args = [arg for arg in dockerfile.pip_install() if arg != "--no-cache-dir"]  # pip's cache keeps it ~1 min
        key = hashlib.sha256(json.dumps([args, (ROOT / "requirements.txt").read_text()]).encode()).hexdigest()
        if key not in made:
            venv = tmp_path_factory.mktemp("image-venv")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
                                    cwd=app_dir, capture_output=True, text=True, timeout=1200)
            assert result.returncode == 0, result.stderr[-4000:]
            made[key] = venv
        return made[key]

    yield get
    for venv in made.values():  # ~1 GB each
        shutil.rmtree(venv, ignore_errors=True)


def _checks(cmd: list[str], bin_dir: Path) -> list[list[str]]:
    """The start command's check form: loads the application without serving or connecting."""
    if cmd[0] == "gunicorn":
        return [[str(bin_dir / "gunicorn"), "-c", option(cmd, "-c"), "--check-config", cmd[-1]]]
    if cmd[0] == "celery":
        app = option(cmd, "-A", "--app")
        return [[str(bin_dir / "celery"), "-A", app, "report"],
                [str(bin_dir / "python"), "-c", "import worker.tasks"]]
    raise AssertionError(f"unknown start command {cmd}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Dockerfile.api", "Dockerfile.worker"])
def test_image_environment_starts_its_application(name: str, tmp_path: Path,
                                                  venv_for: Callable[[Dockerfile, Path], Path]) -> None:
    dockerfile = Dockerfile.parse(ROOT / name)
    app_dir = copy_image_files(dockerfile, tmp_path / "rootfs")
    venv = venv_for(dockerfile, app_dir)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(PREFIX) and key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(dockerfile.env, TMPDIR=str(scratch), MLAAS_TMP_DIR=str(scratch / "mlaas"),
               PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    for check in _checks(dockerfile.cmd, venv / "bin"):
        result = subprocess.run(check, cwd=app_dir, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{name}: {shlex.join(check)}\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
