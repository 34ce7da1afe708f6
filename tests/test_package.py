"""The package as users get it: a wheel with only `opengraphau`, the `opengraphau` command
outside the clone, the reference's names kept as thin entry points, and one table per fact."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from factories import FACE, ROOT, read_rows
from opengraphau.weights import OFFICIAL_CHECKPOINTS


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`pip wheel .` then `pip install` of that wheel into a folder of its own (no deps: they
    are this venv's), as `pip install .` would lay it out."""
    tmp = tmp_path_factory.mktemp("pip")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("opengraphau-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(tmp / "site"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return {"wheel": wheel, "site": tmp / "site", "tmp": tmp}


def _outside_env(site: Path) -> dict[str, str]:
    """This venv's interpreter with only the installed copy importable (not the clone)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return env


@pytest.mark.slow
def test_wheel_installs_only_the_package(installed: dict[str, Path]) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"opengraphau"}
    assert "opengraphau/py.typed" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(installed["wheel"]).read(entry).decode()
    assert re.search(r"^opengraphau = opengraphau\.cli:main$", text, re.M)
    site = installed["site"]
    assert not any((site / name).exists() for name in ("model", "conf.py", "utils.py", "demo.py"))


@pytest.mark.slow
def test_installed_command_outside_the_clone_gives_the_clone_numbers(
    installed: dict[str, Path], resnet18_s1: Path, tmp_path: Path
) -> None:
    env = _outside_env(installed["site"])
    script = installed["site"] / "bin" / "opengraphau"
    common = ["--resume", str(resnet18_s1), "--input", str(FACE), "--no-detect", "--quiet"]
    outside = subprocess.run(
        [sys.executable, str(script), *common, "--output-dir", str(tmp_path / "installed")],
        cwd=installed["tmp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert outside.returncode == 0, outside.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import opengraphau; print(opengraphau.__file__)"],
        cwd=installed["tmp"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(installed["site"]))
    module = subprocess.run(
        [sys.executable, "-m", "opengraphau", "--help"],
        cwd=installed["tmp"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert module.returncode == 0 and module.stdout.startswith("usage: opengraphau")
    clone = subprocess.run(
        [sys.executable, "demo.py", *common, "--output-dir", str(tmp_path / "clone")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert clone.returncode == 0, clone.stderr
    a, b = read_rows(tmp_path / "installed"), read_rows(tmp_path / "clone")
    assert [r["AU12"] for r in a] == [r["AU12"] for r in b] and len(a) == 1


def test_reference_names_are_thin_entry_points() -> None:
    import conf
    import model
    import opengraphau.model
    import utils
    from opengraphau.aus import AU_COLUMNS
    from opengraphau.errors import OpenGraphAUError

    assert model.load_model is opengraphau.model.load_model
    assert conf.AU_COLUMNS is AU_COLUMNS and conf.OFFICIAL_CHECKPOINTS is OFFICIAL_CHECKPOINTS
    assert utils.UserError is OpenGraphAUError
    package = ROOT / "opengraphau"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (conf|utils|model|demo)\b", text, re.M), path


def test_import_and_help_load_no_torch() -> None:
    """`import opengraphau` and the CLI's parser stay light: --help answers at once."""
    code = (
        "import sys, opengraphau, opengraphau.cli.args; "
        "opengraphau.cli.args.build_parser('x'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api() -> None:
    import opengraphau

    for name in opengraphau.__all__:
        assert getattr(opengraphau, name) is not None, name
    assert re.fullmatch(r"\d+\.\d+\.\d+", opengraphau.__version__)
    with pytest.raises(AttributeError):
        opengraphau.no_such_name  # noqa: B018


def test_checkpoints_readme_lists_the_official_table() -> None:
    """checkpoints/README.md and weights.OFFICIAL_CHECKPOINTS say the same."""
    rows = [
        line
        for line in (ROOT / "checkpoints" / "README.md").read_text().splitlines()
        if line.startswith("| ") and ".pth" in line
    ]
    assert len(rows) == len(OFFICIAL_CHECKPOINTS)
    for row, official in zip(rows, OFFICIAL_CHECKPOINTS):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:4] == [
            f"`{official.name}`",
            official.arch,
            str(official.stage),
            official.filename,
        ]
        assert (official.url or "no public link") in cells[4]
        scores = [f"{official.f1:.2f}", f"{official.acc:.2f}"] if official.f1 else ["–", "–"]
        assert cells[5:7] == scores


def test_license_and_citation_agree_with_the_package() -> None:
    """LICENSE is the MIT text pyproject declares; CITATION.cff is CFF 1.2.0 with this version
    and the models' paper as its preferred citation; the README says how to cite and what the
    numbers are."""
    import tomllib
    import yaml

    from opengraphau import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    license_text = (ROOT / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"} and license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the opengraphau authors" in license_text
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["version"] == __version__
    assert {"message", "title", "authors"} <= set(cff)
    paper = cff["preferred-citation"]
    assert paper["year"] == 2022 and [a["family-names"] for a in paper["authors"]] == [
        "Luo",
        "Song",
        "Xie",
        "Shen",
        "Gunes",
    ]
    assert " ".join(paper["title"].split()) == (
        "Learning Multi-dimensional Edge Feature-based "
        "AU Relation Graph for Facial Action Unit "
        "Recognition"
    )
    readme = (ROOT / "README.md").read_text()
    assert "\n## Citing\n" in readme and "2205.01782" in readme
    assert "\n## What the numbers mean\n" in readme and "not an intensity" in readme


def test_readme_is_short_and_its_links_lead_somewhere() -> None:
    """The README is a newcomer's page (about 250 lines); the long material lives in docs/,
    every page there is linked from it, and every relative link of the README and docs/ exists."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 260
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages and all(f"(docs/{page})" in readme for page in pages)
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
