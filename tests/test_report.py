"""The run report: every run writes report.html (environment.json and evaluation.json beside
it), `specbuild report` rewrites it or writes a study's, and the page opens in a browser with
no console error, every image loaded and every table there.

Three small runs (a classifier, a multi-output model, a GAN) are trained once for the module.
The browser tests drive Debian's headless Chromium (tests/browser.py); where it is not
installed they are skipped, except under CI, which installs it (.ci/run).  Each screenshot is
saved in the test's tmp folder, and also in $SPECBUILD_SCREENSHOTS when that is set, so a
person can look at the pages.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from browser import Browser, find_chromium
from cli_runner import read_history, run_cli

REPO = Path(__file__).resolve().parent.parent
RUNS = {   # name -> (spec, options): tiny, but each epoch sees every class
    "classification": ("fnn.yaml", ["--limit", 64, "--epochs", 2]),
    "multi_output": ("multi_output.yaml", ["--limit", 64, "--epochs", 2]),
    "gan": ("gan.yaml", ["--limit", 64, "--epochs", 2]),
}
HOSTILE = '<script>alert("doc")</script><img src=x onerror=alert(1)> & "quotes"'
_trained: dict = {}


@pytest.fixture
def runs(capsys, tmp_path_factory) -> dict:
    """The three run folders, trained through the CLI on the first use in this module."""
    if not _trained:
        base = tmp_path_factory.mktemp("runs")
        for name, (spec, options) in RUNS.items():
            rc, _, err = run_cli(capsys, "train", REPO / "specs" / spec, "--data", "mnist-sample",
                                 *options, "--out", base / name)
            assert rc == 0, err
            _trained[name] = base / name
    return _trained


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI installs it (.ci/run): the report's browser test "
                        "cannot be skipped there")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the report's browser test is "
                    "skipped")
    driver = Browser(executable)
    try:
        yield driver
    finally:
        driver.close()


def render(browser, page: Path, tmp_path: Path, name: str) -> dict:
    """The page's facts in Chromium, after saving its screenshot (and a copy for a person)."""
    shot = tmp_path / f"{name}.png"
    facts = browser.render(page, shot)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    where = os.environ.get("SPECBUILD_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(where) / shot.name)
    assert facts["errors"] == [], facts["errors"]
    assert facts["scripts"] == 0
    assert [i for i in facts["images"] if not i["loaded"]] == []
    assert facts["width"] <= 1280, "the page is wider than the window"
    return facts


def self_contained(page: str) -> None:
    """Nothing the page would fetch: no script, no external address in a src, href or CSS url()."""
    assert "<script" not in page.lower()
    assert not re.search(r'\b(src|href)\s*=\s*"(?!data:|#|\./|\.\./|trials/)', page), "a link leaves the page"
    assert not re.search(r"url\((?!#)", page)      # url(#sb-arrow): the graph's own arrow head
    assert not re.search(r'(src|href)="https?:', page)


def test_every_run_writes_its_report(runs):
    for name, folder in runs.items():
        page = (folder / "report.html").read_text(encoding="utf-8")
        self_contained(page)
        assert "<svg" in page and 'class="graph"' in page
        env = json.loads((folder / "environment.json").read_text())
        assert env["device"] == "cpu" and env["seed"] == 0 and env["world_size"] == 1
        assert env["torch"] and env["numpy"] and env["python"] and env["data"]["name"] == "mnist-sample"
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert evaluation["outcome"] == "finished" and evaluation["epoch"] == 2, (name, evaluation)
        assert not [f for f in os.listdir(folder) if ".tmp-" in f]


def test_the_confusion_matrix_is_the_last_epochs_model(runs):
    folder = runs["classification"]
    [entry] = json.loads((folder / "evaluation.json").read_text())["objectives"]
    matrix = entry["confusion"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == entry["samples"] == 64 == sum(entry["per_class"]["support"])
    diagonal = sum(matrix[i][i] for i in range(10))
    last = read_history(folder)[-1]
    assert diagonal / 64 == pytest.approx(last["val_accuracy"]) == pytest.approx(entry["accuracy"])
    recall = [matrix[i][i] / sum(matrix[i]) if sum(matrix[i]) else 0.0 for i in range(10)]
    assert entry["per_class"]["recall"] == pytest.approx(recall)
    assert entry["classes"] == [str(i) for i in range(10)] and entry["epoch"] == 2


def test_classes_the_data_set_names_are_shown_by_name(tmp_path, capsys):
    from test_data import write_mnist_folder
    write_mnist_folder(tmp_path / "data" / "FashionMNIST" / "raw", gz=False)
    out = tmp_path / "fashion"
    rc, _, err = run_cli(capsys, "train", REPO / "specs" / "fnn.yaml", "--data", "fashion-mnist", "--data-root",
                         tmp_path / "data", "--no-download", "--epochs", 1, "--out", out)
    assert rc == 0, err
    [entry] = json.loads((out / "evaluation.json").read_text())["objectives"]
    assert entry["classes"][0] == "T-shirt/top" and entry["classes"][9] == "Ankle boot"
    page = (out / "report.html").read_text()
    assert "T-shirt/top" in page and "Ankle boot" in page


def test_a_multi_output_run_evaluates_its_class_head_only(runs):
    evaluation = json.loads((runs["multi_output"] / "evaluation.json").read_text())
    assert [(o["on"], o["target"]) for o in evaluation["objectives"]] == [("fc2", "label")]
    last = read_history(runs["multi_output"])[-1]
    assert evaluation["objectives"][0]["accuracy"] == pytest.approx(last["val_fc2_accuracy"])


def test_a_gan_run_shows_its_first_and_last_sample_grids(runs):
    folder = runs["gan"]
    assert json.loads((folder / "evaluation.json").read_text())["objectives"] == []
    page = (folder / "report.html").read_text()
    assert 'id="samples-first"' in page and 'id="samples-last"' in page and "epoch 2" in page


EXPECTED = {   # run -> the tables and images its page must hold
    "classification": ({"final-metrics", "history", "confusion-fc2", "per-class-fc2", "summary-fnn", "environment"},
                       {"curves"}),
    "multi_output": ({"final-metrics", "history", "confusion-fc2", "per-class-fc2", "summary-multi_output",
                      "environment"}, {"curves"}),
    "gan": ({"final-metrics", "history", "summary-generator", "summary-discriminator", "environment"},
            {"curves", "samples-first", "samples-last"}),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_report_renders_in_chromium(runs, browser, tmp_path, name):
    facts = render(browser, runs[name] / "report.html", tmp_path, name)
    tables, images = EXPECTED[name]
    assert tables <= {t["id"] for t in facts["tables"]}, facts["tables"]
    assert all(t["rows"] > 1 for t in facts["tables"])
    assert images <= {i["id"] for i in facts["images"]}, facts["images"]
    graphs = [s for s in facts["svgs"] if s["cls"] == "graph"]
    assert len(graphs) == 1 and graphs[0]["nodes"] >= 6
    for heading in ("Overview", "Curves", "Spec", "Summary", "Graph", "Environment"):
        assert heading in facts["headings"]
    if name != "gan":
        assert {"Confusion matrix", "Per-class precision and recall"} <= set(facts["headings"])


@pytest.fixture
def hostile(runs, tmp_path, capsys) -> Path:
    """A copy of the classification run whose doc and command line hold markup, its report rewritten."""
    folder = tmp_path / "hostile"
    shutil.copytree(runs["classification"], folder)
    spec = (folder / "spec.yaml").read_text()
    (folder / "spec.yaml").write_text(re.sub(r"doc: [\s\S]*?\ninputs:", "doc: " + json.dumps(HOSTILE)
                                             + "\ninputs:", spec, count=1))
    env = json.loads((folder / "environment.json").read_text())
    env["command"] = ["specbuild", "train", "</td><script>alert(2)</script>"]
    (folder / "environment.json").write_text(json.dumps(env))
    rc, out, err = run_cli(capsys, "report", folder)
    assert rc == 0 and out == f"wrote {folder / 'report.html'}\n", err
    return folder


def test_text_from_the_run_folder_is_escaped(hostile):
    page = (hostile / "report.html").read_text()
    self_contained(page)
    assert "&lt;script&gt;alert(&quot;doc&quot;)&lt;/script&gt;" in page and "alert(2)&lt;/script&gt;" in page


def test_text_from_the_run_folder_is_shown_not_run(hostile, browser, tmp_path):
    facts = render(browser, hostile / "report.html", tmp_path, "hostile")
    assert HOSTILE in facts["text"] and "<script>alert(2)</script>" in facts["text"]


def test_missing_parts_are_notes_in_the_page(runs, tmp_path, capsys):
    """An older run folder (no environment.json, evaluation.json or curves.png) still has a report."""
    folder = tmp_path / "older"
    shutil.copytree(runs["classification"], folder)
    for name in ("environment.json", "evaluation.json", "curves.png", "report.html"):
        (folder / name).unlink()
    (folder / "metrics.jsonl").write_text((folder / "metrics.jsonl").read_text() + "{not json\n")
    rc, _, err = run_cli(capsys, "report", folder, "-o", tmp_path / "older.html")
    assert rc == 0, err
    page = (tmp_path / "older.html").read_text()
    assert not (folder / "report.html").exists()
    for words in ("evaluation.json is missing", "environment.json is missing", "curves.png is missing",
                  "metrics.jsonl line 3 is not a JSON object"):
        assert words in page
    assert 'id="summary-fnn"' in page and 'id="history"' in page


@pytest.mark.parametrize("evaluation", [
    {"objectives": "fc2"},
    {"objectives": [3, {"name": "fc2", "classes": ["a", "b"], "confusion": [[1, "x"], [0, 2]],
                        "per_class": {"precision": [1.0]}, "samples": "many", "accuracy": "high"}],
     "best": 3, "epochs": "ten", "outcome": "stopped", "message": None},
    [1, 2],
])
def test_an_evaluation_json_edited_by_hand_costs_figures_not_the_page(runs, tmp_path, capsys, evaluation):
    folder = tmp_path / "edited"
    shutil.copytree(runs["classification"], folder)
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    rc, _, err = run_cli(capsys, "report", folder)
    assert rc == 0, err
    page = (folder / "report.html").read_text()
    assert 'id="summary-fnn"' in page and 'id="confusion-fc2"' not in page and 'id="per-class-fc2"' not in page


def test_a_run_stopped_before_its_first_epoch(tmp_path, capsys):
    folder = tmp_path / "young"
    folder.mkdir()
    shutil.copy(REPO / "specs" / "cnn.yaml", folder / "spec.yaml")
    rc, _, err = run_cli(capsys, "report", folder)
    assert rc == 0, err
    page = (folder / "report.html").read_text()
    assert "No epoch finished" in page and 'id="summary-cnn"' in page and "<svg" in page


@pytest.mark.parametrize("make, words", [
    (lambda p: p.mkdir(), "holds no run"),
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("x"), "is a file, not a run folder"),
])
def test_a_folder_without_a_run_is_refused(tmp_path, capsys, make, words):
    folder = tmp_path / "somewhere"
    make(folder)
    rc, out, err = run_cli(capsys, "report", folder)
    assert rc == 1 and out == ""
    assert str(folder) in err and words in err, err
    assert not (tmp_path / "somewhere" / "report.html").exists() if folder.is_dir() else True


def test_a_folder_of_runs_names_one_of_them(runs, capsys):
    rc, _, err = run_cli(capsys, "report", runs["gan"].parent)
    assert rc == 1 and "holds no run" in err and "it holds 3 run folders: give one, such as" in err, err


def test_report_out_must_be_in_a_folder_that_exists(runs, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "report", runs["classification"], "--out", tmp_path / "no" / "r.html")
    assert rc == 1 and "does not exist" in err and str(tmp_path / "no") in err
    rc, out, err = run_cli(capsys, "report", runs["classification"], "--out", tmp_path)   # a folder: its report.html
    assert rc == 0 and (tmp_path / "report.html").is_file(), err


def test_a_stopped_run_records_why_and_still_has_its_report(tmp_path):
    from specbuild.training.session import TrainingStopped
    from specbuild.training.trainer import train

    class StopAfterFirstEpoch:
        def epoch_end(self, session, loop, row):
            raise TrainingStopped("stopped by the test after epoch 1")

    with pytest.raises(TrainingStopped, match="by the test"):
        train(str(REPO / "specs" / "fnn.yaml"), data="mnist-sample", limit=16, epochs=3, out=tmp_path / "run",
              observers=[StopAfterFirstEpoch()])
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert evaluation["outcome"] == "stopped" and "by the test" in evaluation["message"]
    assert evaluation["epoch"] == 1 and evaluation["objectives"] == []
    page = (tmp_path / "run" / "report.html").read_text()
    assert "The run stopped before its end: stopped by the test after epoch 1" in page


def test_a_report_that_fails_is_a_note_and_the_run_succeeds(tmp_path, capsys, monkeypatch):
    import specbuild.training.run_facts as run_facts

    def broken(folder):
        raise RuntimeError("the disk is haunted")
    monkeypatch.setattr(run_facts, "write_report", broken)
    rc, out, err = run_cli(capsys, "train", REPO / "specs" / "fnn.yaml", "--data", "mnist-sample", "--limit", 16,
                           "--epochs", 1, "--out", tmp_path / "run")
    assert rc == 0 and "final:" in out
    assert "the run's report.html was not written (RuntimeError: the disk is haunted)" in err
    assert (tmp_path / "run" / "evaluation.json").is_file() and not (tmp_path / "run" / "report.html").exists()


def _plot(path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2, 3], [0.5, 0.7, 0.91, 0.8], marker="o")
    ax.set_title(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


@pytest.fixture
def study(tmp_path) -> Path:
    """A study's folder as `specbuild tune` leaves it: trials.json, two plots, a trial's run folder."""
    folder = tmp_path / "study"
    (folder / "trials" / "002").mkdir(parents=True)
    (folder / "trials" / "002" / "report.html").write_text("<!DOCTYPE html><title>trial 2</title>")
    _plot(folder / "history.png", "history")
    _plot(folder / "importances.png", "importances")
    trial = {"params": {"lr": 0.01, "hidden": 64, "optimizer": "Adam"}, "epochs": 3, "seconds": 4.2, "error": None}
    study = {"study": "fnn-lr <b>", "storage": "sqlite:///study.db", "metric": "val_accuracy", "direction": "maximize",
             "best": {"number": 2, "value": 0.91, "params": {"lr": 0.003, "hidden": 128, "optimizer": "Adam"},
                      "run": "trials/002"},
             "trials": [{**trial, "number": 0, "state": "COMPLETE", "value": 0.8, "run": "trials/000"},
                        {**trial, "number": 1, "state": "PRUNED", "value": 0.4, "run": "trials/001"},
                        {**trial, "number": 2, "state": "COMPLETE", "value": 0.91, "run": "trials/002",
                         "params": {"lr": 0.003, "hidden": 128, "optimizer": "Adam"}},
                        {**trial, "number": 3, "state": "FAIL", "value": None, "run": "trials/003", "seconds": None,
                         "error": "the loss became nan at epoch 1, step 3"},
                        {"number": 4, "state": "RUNNING", "value": None, "params": {"lr": 0.1}, "run": None,
                         "error": None, "epochs": 0, "seconds": None}],
             "plots": {"history": "history.png", "importances": "importances.png"},
             "notes": ["2 trials were pruned by the median pruner"]}
    (folder / "trials.json").write_text(json.dumps(study))
    return folder


def test_a_study_folder_gets_a_study_report(study):
    from specbuild.report.write import write_report
    page_path = write_report(study)
    assert page_path == study / "report.html"
    page = page_path.read_text()
    self_contained(page)
    assert 'href="./trials/002/report.html"' in page and ">trials/000<" in page    # no folder there: no link
    assert "fnn-lr &lt;b&gt;" in page and "the loss became nan at epoch 1, step 3" in page
    assert page.count('src="data:image/png;base64,') == 2


def test_the_study_report_renders_in_chromium(study, browser, tmp_path):
    from specbuild.report.write import write_report
    facts = render(browser, write_report(study), tmp_path, "study")
    assert {"study", "best-params", "trials"} <= {t["id"] for t in facts["tables"]}
    assert next(t for t in facts["tables"] if t["id"] == "trials")["rows"] == 6
    assert {"plot-history", "plot-importances"} <= {i["id"] for i in facts["images"]}
    assert "Best trial: number 2" in facts["headings"]


def test_a_study_report_elsewhere_links_back_to_the_trials(study, tmp_path):
    from specbuild.report.write import write_report
    elsewhere = tmp_path / "pages"
    elsewhere.mkdir()
    page = write_report(study, out=elsewhere / "study.html").read_text()
    assert 'href="../study/trials/002/report.html"' in page


def test_the_graph_svg_is_well_formed_and_escaped():
    import networkx as nx
    from specbuild.compiler.render import Drawing, spec_graph, to_svg
    dag = nx.DiGraph()
    dag.add_node("x", label="x\ninput <N> & 'more'", kind="input")
    dag.add_node("a", label="a\nLinear [N, 4]", kind="layer")
    dag.add_node("b", label="b\nrelu [N, 4]", kind="layer")
    dag.add_node("out", label="output", kind="output")
    dag.add_edges_from([("x", "a"), ("a", "b"), ("b", "out"), ("x", "out")])
    svg = to_svg(Drawing({"net": dag}), title="t<itle>")
    root = ET.fromstring(svg)              # well-formed XML: every label escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}g")) == 4 and len(root.findall(f"{ns}path")) == 4
    assert "input <N> & 'more'" in "".join(root.itertext()) and "t<itle>" in "".join(root.itertext())
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    several = ET.fromstring(to_svg(spec_graph(str(REPO / "specs" / "gan.yaml"))))
    assert [t.text for t in several.findall(f"{ns}text")] == ["generator", "discriminator"]


def test_the_browser_check_sees_a_broken_page(browser, tmp_path):
    """The checks above can fail: a refused script, a thrown error and a missing image are all seen."""
    from specbuild.report.html import CSP
    page = tmp_path / "broken.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head>'
                    '<body><script>console.error("refused")</script><img id="gone" src="data:image/png;base64,AAAA">'
                    "</body></html>")
    facts = browser.render(page, tmp_path / "broken.png")
    assert any("Content Security Policy" in e for e in facts["errors"]), facts["errors"]
    assert [i["loaded"] for i in facts["images"]] == [False]
    unsafe = tmp_path / "unsafe.html"
    unsafe.write_text('<!DOCTYPE html><html><body><script>console.error("said"); throw new Error("thrown")</script>'
                      "</body></html>")
    errors = browser.render(unsafe, tmp_path / "unsafe.png")["errors"]
    assert any("said" in e for e in errors) and any("thrown" in e for e in errors), errors
