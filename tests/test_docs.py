"""The front door and the manual: the docs site builds, and every seqbench command they show is one
the command line accepts (the flags exist, the values parse)."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(path: Path) -> list[str]:
    """`seqbench ...` lines inside the page's bash code blocks (comments and prompts stripped)."""
    out, in_bash = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_bash = line.strip() in ("```bash", "```sh")
            continue
        text = line.strip().removeprefix("$ ")
        if in_bash and text.startswith("seqbench "):
            out.append(re.split(r"\s+#\s", text)[0].strip())
    return out


CASES = [(p.name, c) for p in PAGES for c in _commands(p)]


def test_the_pages_show_commands():
    assert len(CASES) > 20 and any(page == "README.md" for page, _ in CASES)


@pytest.mark.parametrize("page,command", CASES, ids=[f"{p}:{i}" for i, (p, _) in enumerate(CASES)])
def test_every_documented_command_parses(page, command):
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse's way of refusing
        pytest.fail(f"{page}: `{command}` is refused by the command line (exit {e.code})")
    assert callable(args.func)


def test_the_docs_site_builds(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("the docs extra is not installed (make installs it)")
    proc = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "site" / "recipes" / "index.html").is_file()
    assert "SeqModel" in (tmp_path / "site" / "api" / "index.html").read_text()


def _python_blocks(text: str, section: str) -> list[str]:
    """The ```python blocks of one `## section` of a page."""
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_readme_integration_snippets_run(tmp_path):
    """README's "Where you already work" snippets, run as a user would paste them (in a fresh directory)."""
    for module in ("sklearn", "sktime", "tensorboard"):
        pytest.importorskip(module, reason="the data, baselines and track extras are not installed (make installs them)")
    blocks = _python_blocks((ROOT / "README.md").read_text(), "Where you already work")
    assert len(blocks) == 3
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / "adding" / "README.md").read_text().startswith("---\n")  # the model card
    assert any((tmp_path / "runs" / "adding" / "tensorboard").iterdir())
