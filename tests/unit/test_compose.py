"""The production container files: docker-compose.yml, .env.example, the Dockerfiles and .dockerignore.

(``make deploy-test``, deploy/deploy_test.py, builds and runs them for real; these tests need no engine.)

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
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from deploy.make_env import is_secret, render
from mlaas.adapters.queue import QUEUES
from mlaas.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
TEST_OVERRIDE = ROOT / "deploy" / "test" / "docker-compose.test.yml"
WORKER_SERVICES = ("worker-train", "worker-evaluate", "worker-drift", "worker-housekeeping")
APP_SERVICES = ("api", *WORKER_SERVICES, "beat")
SERVICES = {"s3", "s3-init", "redis", "postgres", "mlflow", "mlflow-init", "proxy", "flower", *APP_SERVICES}
PUBLISHED = {"proxy": 8000, "mlflow": 5000, "flower": 5555}
# The queue another change introduces; a worker consuming it before any task is routed there is harmless.
NEW_QUEUES = {"housekeeping"}
LONG_RUNNING_RESTARTS = {"always", "unless-stopped", "on-failure"}
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker", "Dockerfile.mlflow", "Dockerfile.flower")
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# -- reading the files ----------------------------------------------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blank lines skipped)."""
    return read_env_file_text(path.read_text(), path.name)


def read_env_file_text(text: str, name: str = ".env") -> dict[str, str]:
    """KEY=value lines of env file text."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``)."""
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
        if match.group(2) in (":?", "?") and not env.get(name):
            raise KeyError(f"{name}: {match.group(3)}")
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def compose_variables() -> dict[str, str | None]:
    """Variables docker-compose.yml reads from .env, with their defaults (None: no default)."""
    return {name: default for name, (kind, default) in variable_uses().items() if kind != ":?"}


def variable_uses() -> dict[str, tuple[str, str | None]]:
    """Each variable of docker-compose.yml: (``:-``, default), (``:?``, message) or ("", None)."""
    found: dict[str, tuple[str, str | None]] = {}
    for match in _VARIABLE.finditer(COMPOSE_FILE.read_text()):
        name = match.group(1) or match.group(4)
        if name:
            kind = match.group(2) or ""
            assert found.get(name, (kind,))[0] == kind, f"{name} is used both with and without a default"
            found[name] = (kind, match.group(3) if kind else None)
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
        """(sources, destination) of each COPY from the build context (not from a build stage, nor the wheelhouse)."""
        result = []
        for args in self.all("COPY"):
            tokens = shlex.split(args)
            if any(t.startswith("--from") for t in tokens):
                continue
            paths = [t for t in tokens if not t.startswith("--")]
            if paths[:-1] == [WHEELHOUSE_SOURCE]:
                continue
            result.append((paths[:-1], paths[-1]))
        return result

    def pip_install(self) -> list[str]:
        """The pip arguments of the single ``RUN sh /tmp/build/install-venv.sh ...`` step, as paths of the context."""
        runs = [shlex.split(args) for args in self.all("RUN") if "install-venv.sh" in args]
        assert len(runs) == 1, f"{self.path.name}: expected one RUN of install-venv.sh, found {len(runs)}"
        assert runs[0][:2] == ["sh", "/tmp/build/install-venv.sh"], f"{self.path.name}: RUN must be just the install"
        staged = {f"/tmp/build/{PurePosixPath(source).name}": source
                  for sources, dest in self.copies() if dest == "/tmp/build/" for source in sources}
        return [staged.get(arg, arg) for arg in runs[0][2:]]


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


WHEELHOUSE_SOURCE = "${WHEELHOUSE:-requirements.txt}"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def made_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env as `make env` writes it: .env.example with every secret filled."""
    path = tmp_path_factory.mktemp("env") / ".env"
    path.write_text(render(ENV_EXAMPLE.read_text(), {}))
    return path


@pytest.fixture(scope="module")
def services(made_env: Path) -> dict[str, Any]:
    """docker-compose.yml's services, interpolated with a generated .env."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(document, read_env_file(made_env))["services"]


@pytest.fixture(scope="module")
def networks() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text())["networks"])


@pytest.fixture(scope="module")
def dockerfiles() -> dict[str, Dockerfile]:
    return {name: Dockerfile.parse(ROOT / name) for name in DOCKERFILES}


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
        pytest.fail("docker-compose is not installed (Debian package docker-compose: `make system-deps`)")
    # Host variables must not leak into the interpolation under test.
    env = {key: value for key, value in os.environ.items() if key not in compose_variables()}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_docker_compose_accepts_the_file_with_a_generated_env_and_refuses_missing_secrets(
        tmp_path: Path, made_env: Path) -> None:
    for files in (["-f", str(COMPOSE_FILE)], ["-f", str(COMPOSE_FILE), "-f", str(TEST_OVERRIDE)]):
        result = _docker_compose(["--env-file", str(made_env), *files, "config", "-q"], ROOT)
        assert result.returncode == 0, result.stderr
        assert "is not set" not in result.stderr, result.stderr

    # Without a .env, or with the example's blank secrets, compose refuses to start and names a secret.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    for env_file in (ENV_EXAMPLE, empty):
        result = _docker_compose(["--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"], ROOT)
        assert result.returncode != 0, env_file.name
        assert re.search(r"set [A-Z0-9_]+(_PASSWORD|_SECRET_KEY) in \.env", result.stderr), result.stderr

    # The validator is not a rubber stamp: a misspelt key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healthchek:", 1))
    result = _docker_compose(["--env-file", str(made_env), "-f", str(broken), "config", "-q"], tmp_path)
    assert result.returncode != 0 and "healthchek" in result.stderr


def test_every_secret_is_required_and_every_other_variable_has_a_default(env_example: dict[str, str]) -> None:
    uses = variable_uses()
    assert uses, "expected ${VAR:-default} interpolation in docker-compose.yml"
    secrets = {name for name in uses if is_secret(name)}
    assert secrets >= {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_MLAAS_PASSWORD",
                       "FLOWER_PASSWORD", "MLAAS_S3_SECRET_KEY", "MLFLOW_S3_SECRET_KEY", "S3_ADMIN_SECRET_KEY"}
    assert {name: kind for name, (kind, _) in uses.items() if name in secrets and kind != ":?"} == {}
    assert {name: kind for name, (kind, _) in uses.items() if name not in secrets and kind != ":-"} == {}
    assert sorted(set(uses) - set(env_example)) == [], "missing from .env.example"
    assert sorted(set(env_example) - set(uses)) == [], ".env.example lists variables compose never reads"
    # The example holds no secret a user could forget to change.
    assert {name: env_example[name] for name in secrets if env_example[name]} == {}


def test_generated_env_fills_each_secret_with_a_distinct_url_safe_value() -> None:
    first, second = (read_env_file_text(render(ENV_EXAMPLE.read_text(), {"API_PORT": "9000"})) for _ in range(2))
    secrets = [name for name in first if is_secret(name)]
    assert secrets and all(re.fullmatch(r"[A-Za-z0-9_-]{32}", first[name]) for name in secrets)
    assert len({first[name] for name in secrets}) == len(secrets)
    assert all(first[name] != second[name] for name in secrets), "secrets must be random"
    assert first["API_PORT"] == "9000" and first["REDIS_USER"] == "mlaas"


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


def test_app_settings_point_at_compose_services_with_credentials(services: dict[str, Any]) -> None:
    redis = environment(services["redis"])
    for name in APP_SERVICES:
        env = environment(services[name])
        settings = Settings.from_env(env)
        for url, service, port in ((settings.redis_url, "redis", 6379),
                                   (settings.mlflow_tracking_uri, "mlflow", 5000),
                                   (settings.s3_endpoint, "s3", 8333)):
            parsed = urlparse(url)
            assert (parsed.hostname, parsed.port) == (service, port), f"{name}: {url}"
        redis_url = urlparse(settings.redis_url)
        assert (redis_url.username, redis_url.password) == (redis["REDIS_USER"], redis["REDIS_PASSWORD"]), name
        init = environment(services["mlflow-init"])
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == (
            init["MLAAS_USER"], init["MLAAS_PASSWORD"]), f"{name} must use mlaas's own MLflow account"
        assert env["MLFLOW_TRACKING_USERNAME"] != environment(services["mlflow"])["MLFLOW_AUTH_ADMIN_USERNAME"]


FAKE_WEED = textwrap.dedent("""\
    import os, shutil, sys
    config = next(arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("-s3.config="))
    shutil.copy(config, os.environ["WEED_OUT"])
""")


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_s3_identities_limit_each_client_to_its_own_buckets(services: dict[str, Any], tmp_path: Path,
                                                            shell: str) -> None:
    assert shutil.which(shell), f"{shell} is not installed"  # both ship with Debian: never skip
    s3 = services["s3"]
    assert s3["entrypoint"][-1] == "-c"
    script = command(s3)[-1].replace("/data/", f"{tmp_path}/data/").replace("/tmp/s3.json", f"{tmp_path}/s3.json")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "weed").write_text(f"#!{sys.executable}\n{FAKE_WEED}")
    (bin_dir / "weed").chmod(0o755)
    env = {**environment(s3), "PATH": f"{bin_dir}:{os.environ['PATH']}", "WEED_OUT": str(tmp_path / "out.json")}
    result = subprocess.run([shell, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    identities = {i["name"]: i for i in json.loads((tmp_path / "out.json").read_text())["identities"]}

    def keys(identity: dict[str, Any]) -> tuple[str, str]:
        (cred,) = identity["credentials"]
        return cred["accessKey"], cred["secretKey"]

    def buckets(identity: dict[str, Any]) -> set[str]:
        scoped = [action.split(":") for action in identity["actions"]]
        assert all(len(parts) == 2 for parts in scoped), f"{identity['name']} has unscoped actions"
        return {bucket for _, bucket in scoped}

    app = Settings.from_env(environment(services["api"]))
    mlflow = environment(services["mlflow"])
    init = environment(services["s3-init"])
    assert keys(identities["mlaas"]) == (app.s3_access_key, app.s3_secret_key.reveal())
    assert buckets(identities["mlaas"]) == set(app.buckets)
    assert keys(identities["mlflow"]) == (mlflow["AWS_ACCESS_KEY_ID"], mlflow["AWS_SECRET_ACCESS_KEY"])
    argv = shlex.split(command(services["mlflow"])[-1].split("exec ", 1)[1].replace("\\\n", " "))
    assert {f"s3://{bucket}" for bucket in buckets(identities["mlflow"])} == {option(argv, "--artifacts-destination")}
    # Only s3-init holds the admin identity, and it makes every bucket the clients are given.
    assert keys(identities["admin"]) == (init["AWS_ACCESS_KEY_ID"], init["AWS_SECRET_ACCESS_KEY"])
    assert set(init["BUCKETS"].split()) == buckets(identities["mlaas"]) | buckets(identities["mlflow"])
    admin_secret = init["AWS_SECRET_ACCESS_KEY"]
    assert all(admin_secret not in environment(services[name]).values() for name in APP_SERVICES + ("mlflow",))


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
    assert set(QUEUES) <= set(consumed) and set(consumed) - set(QUEUES) <= NEW_QUEUES, consumed


def _bytes(size: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(float(size[:-1]) * units[size[-1].lower()]) if size[-1].lower() in units else int(size)


def test_workers_are_limited_and_recycle_their_pool_children_below_the_limit(services: dict[str, Any]) -> None:
    for name in WORKER_SERVICES:
        service = services[name]
        limit = _bytes(str(service["mem_limit"]))
        assert 0 < float(service["cpus"]) <= 2, name
        argv = command(service)
        assert int(option(argv, "--max-tasks-per-child")) > 0, name
        per_child = int(option(argv, "--max-memory-per-child")) * 1024  # KiB
        assert 0 < per_child < limit, f"{name}: a child may grow to {per_child} bytes, the container to {limit}"
    for name, service in services.items():
        assert "mem_limit" in service or name in one_shot(services), f"{name} has no memory limit"


def test_only_the_proxy_mlflow_and_flower_publish_ports_and_api_replicas_scale(services: dict[str, Any]) -> None:
    for name, port in PUBLISHED.items():
        container_ports = {int(str(spec).rsplit(":", 1)[-1].split("/")[0]) for spec in services[name].get("ports", [])}
        assert port in container_ports, f"{name} does not publish {port}"
        assert all(str(spec).startswith("127.0.0.1:") for spec in services[name]["ports"]), name
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == set(PUBLISHED), f"{published - set(PUBLISHED)} must stay on the internal network"
    api = services["api"]
    assert "container_name" not in api and "ports" not in api, "--scale api=N needs neither"
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "resolver 127.0.0.11" in conf and re.search(r"set \$api api:8000;\s+proxy_pass http://\$api;", conf)
    assert any(str(volume).startswith("./deploy/nginx.conf:/etc/nginx/nginx.conf") for volume in
               services["proxy"]["volumes"])


def test_metrics_and_backends_live_on_an_internal_network(services: dict[str, Any], networks: dict[str, Any]) -> None:
    assert networks["backend"] == {"internal": True}
    for name, service in services.items():
        assert "backend" in service["networks"], name
        if environment(service).get("MLAAS_WORKER_METRICS_PORT"):
            assert not service.get("ports"), f"{name} publishes its metrics"
            others = set(service["networks"]) - {"backend", "egress"}
            assert others == set(), f"{name}'s metrics are reachable on {others}"
    on_egress = {name for name, service in services.items() if "egress" in service["networks"]}
    assert on_egress == set(WORKER_SERVICES), "the workers' egress network has members that could scrape them"
    assert {n for n, s in services.items() if "edge" in s["networks"]} == set(PUBLISHED)


def test_redis_requires_its_acl_user_and_persists_an_append_only_file(services: dict[str, Any]) -> None:
    redis = services["redis"]
    script = command(redis)[-1]
    argv = shlex.split(script.split("exec ", 1)[1])
    assert argv[0] == "redis-server"
    assert option(argv, "--appendonly") == "yes"
    assert option(argv, "--appendfsync") == "everysec"
    assert option(argv, "--dir") == "/data"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    # The default user's password is random at each start (`off` would make Redis 7.0 drop MULTI/EXEC blocks
    # when it replays the append-only file); clients use the ACL user.
    assert "user default on >%s" in script and "/dev/urandom" in script and '"$REDIS_PASSWORD"' in script
    assert environment(redis)["REDIS_USER"] != "default"
    assert environment(redis)["REDIS_PASSWORD"] not in script, "the password stays out of the command line"
    assert "$REDIS_PASSWORD" in redis["healthcheck"]["test"][-1]


def test_beat_runs_once_and_keeps_its_schedule_on_a_volume(services: dict[str, Any]) -> None:
    beat = services["beat"]
    assert "scale" not in beat
    assert int((beat.get("deploy") or {}).get("replicas", 1)) == 1
    argv = command(beat)
    assert argv[:4] == ["celery", "-A", "worker.celery_app:app", "beat"]
    schedule = option(argv, "--schedule", "-s")
    schedule_dir = PurePosixPath(schedule).parent
    mounts = {PurePosixPath(str(volume).split(":")[1]) for volume in beat.get("volumes", [])}
    assert schedule_dir in mounts
    others = [name for name, service in services.items() if name != "beat" and "beat" in command(service)]
    assert others == [], f"beat also runs in {others}"
    # The health check looks at what the scheduler loop writes, not merely at the broker.
    check = beat["healthcheck"]["test"][-1]
    assert schedule in check and "getmtime" in check and "connection" not in check


@pytest.mark.parametrize("age, healthy", [(10, True), (3600, False)])
def test_beat_health_check_fails_when_the_schedule_stops_being_written(
        services: dict[str, Any], tmp_path: Path, age: int, healthy: bool) -> None:
    check = services["beat"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"")
    os.utime(schedule, (time.time() - age, time.time() - age))
    code = check[-1].replace("/var/lib/mlaas/", f"{tmp_path}/")
    assert (subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0) is healthy


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


def test_mlflow_server_runs_with_auth_on_postgres_and_installs_nothing_at_start(services: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    built_from = dockerfile_of(mlflow)
    assert built_from is not None and built_from.path.name == "Dockerfile.mlflow"
    script = command(mlflow)[-1]
    assert "pip" not in script
    argv = shlex.split(script.split("exec ", 1)[1].replace("\\\n", " "))
    assert argv[:2] == ["mlflow", "server"]
    assert option(argv, "--app-name") == "basic-auth"
    assert option(argv, "--host") == "0.0.0.0" and option(argv, "--port") == "5000"
    assert "mlflow:5000" in option(argv, "--allowed-hosts").split(",")
    env = environment(mlflow)
    backend = urlparse(env["MLFLOW_BACKEND_STORE_URI"])
    assert (backend.scheme, backend.hostname) == ("postgresql+psycopg2", "postgres")
    postgres = environment(services["postgres"])
    assert (backend.username, backend.password, backend.path) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"])
    assert postgres["POSTGRES_PASSWORD"] not in script, "the password stays out of the command line"
    assert "default_permission = NO_PERMISSIONS" in script
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert urlparse(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "s3"


def test_flower_is_behind_basic_auth_and_reaches_redis_with_its_password(services: dict[str, Any]) -> None:
    env = environment(services["flower"])
    user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
    assert user and len(password) >= 16
    broker = urlparse(env["CELERY_BROKER_URL"])
    assert (broker.hostname, broker.password) == ("redis", environment(services["redis"])["REDIS_PASSWORD"])
    assert broker.password not in " ".join(command(services["flower"]))


def test_the_test_override_changes_only_images_and_build_arguments() -> None:
    override = yaml.safe_load(TEST_OVERRIDE.read_text())
    for name, service in override["services"].items():
        assert name in SERVICES, name
        assert set(service) <= {"image", "build"}, f"{name}: {set(service)}"
        assert set(service.get("build", {})) <= {"args"}, name


# -- Dockerfiles ----------------------------------------------------------------------------------
def test_dockerfiles_build_a_slim_non_root_image(dockerfiles: dict[str, Dockerfile]) -> None:
    for name, dockerfile in dockerfiles.items():
        assert dockerfile.all("ARG")[0] == "BASE_IMAGE=python:3.11-slim", name
        assert dockerfile.all("FROM") == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"], name
        user = dockerfile.last("USER")
        assert user.split(":")[0] not in {"root", "0"}, name
        env = dockerfile.env
        assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1", name
        assert env["PATH"].startswith("/opt/venv/bin:"), name
        assert "COPY --from=build /opt/venv /opt/venv" in [f"COPY {args}" for args in dockerfile.all("COPY")], name
        pip_args = dockerfile.pip_install()
        assert "requirements.txt" in (option(pip_args, "-r", "-c"), option(pip_args, "-c", "-r")), name
        if "TMPDIR" in env and name != "Dockerfile.mlflow":
            assert env["TMPDIR"] == env["MLAAS_TMP_DIR"], name
        if "TMPDIR" in env:  # the temp dir is created for the runtime user
            assert any(env["TMPDIR"] in args and f"-o {user}" in args for args in dockerfile.all("RUN")), name


def test_install_script_uses_the_wheelhouse_alone_when_one_is_given(tmp_path: Path) -> None:
    script = (ROOT / "deploy" / "install-venv.sh").read_text()
    assert "--no-index --find-links /tmp/wheels" in script and "--no-cache-dir" in script
    for name in DOCKERFILES:
        text = (ROOT / name).read_text()
        assert f"COPY {WHEELHOUSE_SOURCE} /tmp/wheels/" in text and "ARG WHEELHOUSE" in text, name


def test_api_image_runs_gunicorn_with_a_health_check_and_without_worker_code(
        dockerfiles: dict[str, Dockerfile]) -> None:
    api = dockerfiles["Dockerfile.api"]
    assert api.cmd == ["gunicorn", "-c", "python:mlaas.api.gunicorn_conf", "--bind", "0.0.0.0:8000",
                       "--workers", "2", "--timeout", "120", "mlaas.api.app:create_app()"]
    assert "/health" in api.last("HEALTHCHECK") and "8000" in api.last("HEALTHCHECK")
    copied = {source.rstrip("/") for sources, _ in api.copies() for source in sources}
    assert copied == {"requirements.txt", "deploy/install-venv.sh", "mlaas"}


def test_worker_image_runs_the_celery_app_of_the_compose_commands(
        dockerfiles: dict[str, Dockerfile], services: dict[str, Any]) -> None:
    worker = dockerfiles["Dockerfile.worker"]
    cmd = worker.cmd
    assert cmd[:4] == ["celery", "-A", "worker.celery_app:app", "worker"]
    queues = set(option(cmd, "-Q").split(","))
    assert set(QUEUES) <= queues and queues - set(QUEUES) <= NEW_QUEUES
    copied = {source.rstrip("/") for sources, _ in worker.copies() for source in sources}
    assert copied == {"requirements.txt", "deploy/install-venv.sh", "mlaas", "worker"}
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
    override = yaml.safe_load(TEST_OVERRIDE.read_text())
    wheelhouses = {service["build"]["args"]["WHEELHOUSE"].rstrip("/") for service in override["services"].values()
                   if "build" in service}
    assert included == copied | wheelhouses
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
                                    cwd=ROOT, capture_output=True, text=True, timeout=1200)  # context paths
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


def test_the_worker_scoring_rollouts_yields_the_cpu_to_the_api(services: dict[str, Any]) -> None:
    from mlaas import queues
    from mlaas.settings import Settings

    [name] = [n for n in WORKER_SERVICES
              if option(command(services[n]), "-Q", "--queues") == queues.TASK_QUEUES[queues.ROLLOUT_SCORE]]
    settings = Settings.from_env(environment(services[name]))
    assert settings.worker_nice == 19 and settings.worker_sched_idle
    assert int(services[name]["cpu_shares"]) < 1024  # below the API's default weight
    assert not {"MLAAS_WORKER_NICE", "MLAAS_WORKER_SCHED_IDLE"} & set(environment(services["api"]))
