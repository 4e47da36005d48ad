"""The package as a user installs it: a clean virtual environment, ``pip install .``, the ``mlaas`` command."""

import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with nothing but pip, and this checkout installed into it (not editable)."""
    where = tmp_path_factory.mktemp("pkg") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    python = where / "bin" / "python"
    built = tmp_path_factory.mktemp("src")
    # Install from a copy of the sources only (no .venv, no stack state), as from an sdist.
    subprocess.run(f"git -C {ROOT} archive HEAD | tar -x -C {built}", shell=True, check=True)
    for changed in ("pyproject.toml", "mlaas"):  # what the working tree has now, committed or not
        subprocess.run(["cp", "-r", str(ROOT / changed), str(built)], check=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             str(built)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return where


def test_pip_install_gives_a_working_mlaas_command(clean_venv: Path) -> None:
    result = subprocess.run([str(clean_venv / "bin" / "mlaas"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: mlaas" in result.stdout and "train" in result.stdout


def test_the_base_install_is_the_light_client(clean_venv: Path) -> None:
    script = ("import importlib.util, mlaas, mlaas.client; "
              "print(mlaas.__version__, [m for m in ('flask', 'mlflow', 'sklearn', 'celery') "
              "if importlib.util.find_spec(m)])")
    result = subprocess.run([str(clean_venv / "bin" / "python"), "-c", script], capture_output=True, text=True,
                            timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    version, heavy = result.stdout.split(" ", 1)
    import mlaas

    assert version == mlaas.__version__
    assert heavy.strip() == "[]", "the client install pulled in the server stack"


def test_the_package_ships_its_type_information(clean_venv: Path) -> None:
    site = next((clean_venv / "lib").glob("python3*/site-packages"))
    assert (site / "mlaas" / "py.typed").is_file()
