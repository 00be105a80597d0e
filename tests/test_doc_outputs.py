"""What the README and docs/*.md show a command printing is what it prints.

A doc shows a command's output as a transcript: a plain ``` block whose lines starting with
`$ ` are commands, each followed by the lines it prints.  The files such a command reads are
the doc's own named blocks (```yaml bad.yaml, ```python make_seqs.py): each is written into a
fresh folder (with `specs/` linked to the shipped specs), and the commands run there, in order:
`specbuild ...` in-process through the `cli` fixture (stderr's lines, then stdout's: the order a
terminal shows them in), `python X` as a subprocess.

Output is compared line for line, exactly -- except for `specbuild train`, whose figures and
timings vary: its lines are compared with every number masked and repeated lines (one per
epoch) collapsed, and it runs 2 epochs whatever the doc shows, so each doc stays cheap to check.
Every transcript's command must be listed in EXPECTED with its exit status, so a new
transcript cannot go unchecked.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
TRAIN_EPOCHS = "2"

# (doc, command) -> the exit status it must end with
EXPECTED = {
    ("README.md", "specbuild validate bad.yaml"): 1,
    ("spec-format.md", "specbuild validate cnn.yaml"): 1,
    ("spec-format.md", "specbuild validate bad.yaml"): 1,
    ("training.md", "specbuild train specs/embedding.yaml --out runs/embedding"): 0,
    ("training.md", "python make_seqs.py"): 0,
    ("training.md", "specbuild train tagger.yaml --out runs/tagger"): 0,
    ("export.md", "specbuild export specs/cnn.yaml --to onnx"): 0,
    ("export.md", "python run_onnx.py"): 0,
    ("import.md", "specbuild import mlp.py:Net --input-shape x=1,28,28"): 0,
}


def fenced_blocks(doc: Path) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(doc.read_text(encoding="utf-8"))]


def named_files(doc: Path) -> dict[str, str]:
    """The doc's named blocks (```yaml bad.yaml): file name -> text."""
    files = {}
    for info, body in fenced_blocks(doc):
        words = info.split()
        if len(words) == 2:
            assert words[1] not in files, f"{doc.name}: two blocks named {words[1]}"
            files[words[1]] = body
    return files


def transcripts(doc: Path) -> list[list[tuple[str, list[str]]]]:
    """Each transcript block as [(command, its output lines), ...]."""
    found = []
    for info, body in fenced_blocks(doc):
        if info or not body.startswith("$ "):
            continue
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:].strip(), []))
            elif line.strip():
                steps[-1][1].append(line)
        found.append(steps)
    return found


ALL = [pytest.param(doc, steps, id=f"{doc.name}-{i}")
       for doc in DOCS for i, steps in enumerate(transcripts(doc))]


def test_every_transcript_is_known():
    shown = {(doc.name, command) for doc in DOCS for steps in transcripts(doc) for command, _ in steps}
    assert shown == set(EXPECTED)


def masked(lines: list[str]) -> list[str]:
    """Numbers masked, consecutive repeats dropped: the form of a training run's output."""
    out: list[str] = []
    for line in lines:
        form = re.sub(r"\d+(\.\d+)?", "#", line)
        if not out or out[-1] != form:
            out.append(form)
    return out


@pytest.mark.parametrize("doc, steps", ALL)
def test_transcript(doc, steps, tmp_path, monkeypatch, cli):
    for name, text in named_files(doc).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    for command, want in steps:
        argv = shlex.split(command)
        if argv[0] == "python":
            done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            rc, got = done.returncode, [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        else:
            assert argv[0] == "specbuild", command
            extra = ["--epochs", TRAIN_EPOCHS, "--no-download"] if argv[1] == "train" else []
            result = cli(*argv[1:], *extra)
            rc = result.rc
            got = [line for line in (result.err + result.out).splitlines() if line.strip()]
        assert rc == EXPECTED[(doc.name, command)], (command, got)
        if argv[:2] == ["specbuild", "train"]:
            assert masked(got) == masked(want), command
        else:
            assert got == want, command


# --- what the docs say in prose, checked where it is cheap -----------------------------------

def _yaml_block(doc: Path, contains: str) -> str:
    hits = [body for info, body in fenced_blocks(doc) if info == "yaml" and contains in body]
    assert len(hits) == 1, contains
    return hits[0]


def test_readme_spec_comments_hold():
    import specbuild
    readme = ROOT / "README.md"
    text = _yaml_block(readme, "name: cnn")
    assert "in_features inferred: 6272" in text
    model = specbuild.build_model(text)
    assert model.fc1.in_features == 6272 and model.conv1.in_channels == 1


def test_unknown_key_message_is_as_documented(cli, write_spec):
    doc = (ROOT / "docs" / "spec-format.md").read_text()
    message = "unknown key 'layer' — did you mean 'layers'?"
    assert f"(`{message}`)" in doc
    result = cli("validate", write_spec("specbuild: 1\nname: t\ninputs: {x: [3]}\nlayer:\n  - {type: relu}\n"))
    assert result.rc == 1 and any(message in line for line in result.lines())


def test_block_example_is_as_documented():
    """The blocks section's example: the forward calls and the weights its text lists."""
    import specbuild
    doc = ROOT / "docs" / "spec-format.md"
    model = specbuild.build_model(_yaml_block(doc, "name: residual_mlp"))
    code = model.code
    assert code.count("self.res(") == 2 and code.count("self.heads(") == 1
    prefixes = sorted({name.rsplit(".", 1)[0] for name, _ in model.named_parameters()})
    assert prefixes == ["heads.score", "heads.size", "hint", "res.0.fc", "res.1.fc", "stem"]
    text = doc.read_text()
    for prefix in prefixes:
        assert f"`{prefix}.*`" in text


def test_multi_output_metric_names_are_as_documented(cli, tmp_path):
    """training.md's metrics.csv header is what a run of specs/multi_output.yaml writes; a dict
    `outputs:` names its metrics after the losses' nodes too."""
    doc = (ROOT / "docs" / "training.md").read_text()
    header = next(line for line in doc.splitlines() if line.startswith("epoch,train_loss,"))
    out = tmp_path / "mo"
    result = cli("train", ROOT / "specs" / "multi_output.yaml", "--data", "mnist-sample", "--limit", "64",
                 "--epochs", "1", "--out", out, "--no-download")
    assert result.rc == 0, result.text
    assert (out / "metrics.csv").read_text().splitlines()[0] == header

    spec = (ROOT / "specs" / "multi_output.yaml").read_text().replace("outputs: [output1, fc3]",
                                                                       "outputs: {digit: output1, ink: fc3}")
    assert "outputs: {digit: output1, ink: fc3}" in spec
    (tmp_path / "dict.yaml").write_text(spec)
    out = tmp_path / "dict"
    result = cli("train", tmp_path / "dict.yaml", "--data", "mnist-sample", "--limit", "64", "--epochs", "1",
                 "--out", out, "--no-download")
    assert result.rc == 0, result.text
    assert (out / "metrics.csv").read_text().splitlines()[0] == header


def test_exit_codes_are_documented_alike():
    """README's Commands paragraph and training.md's table give the same statuses as the CLI."""
    from specbuild.cli import main as cli_main
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Every command exits with"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    training = (ROOT / "docs" / "training.md").read_text()
    table = training[training.index("## Exit codes"):]
    in_table = [int(n) for n in re.findall(r"^\| (\d+) \|", table, re.M)]
    in_readme = [int(n) for n in re.findall(r"\*\*(\d+)\*\*", paragraph)]
    assert in_table == in_readme == [0, 1, 2, 3, 130]
    constants = [getattr(cli_main, name, None) for name in
                 ("EXIT_OK", "EXIT_INPUT", "EXIT_USAGE", "EXIT_BUG", "EXIT_INTERRUPTED")]
    assert constants == [0, 1, 2, 3, 130]


def test_exit_codes_0_1_2(cli, write_spec):
    good = write_spec("specbuild: 1\nname: t\ninputs: {x: [3]}\nlayers:\n  - {type: relu}\n")
    assert cli("validate", good).rc == 0
    assert cli("validate", write_spec("specbuild: 1\nname: t\n")).rc == 1
    assert cli("validate", good, "--no-such-option").rc == 2
    assert cli("validate").rc == 2
