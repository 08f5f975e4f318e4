"""A model card (``README.md``) in every run directory, so a run can be shared as it is: YAML front
matter in the form model hubs read (library, tags, metrics), then the model and its size, the data
and its fingerprint, the metrics beside the trivial baseline and the paper, what was measured, and
how to load, predict and export."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "README.md"


def _yaml(value: Any) -> str:
    return json.dumps(value)  # JSON scalars and lists are YAML


def model_card(config: dict[str, Any], result: dict[str, Any], task) -> str:
    model, task_cfg, train = config["model"], config["task"], config["train"]
    name, metric = model.get("name", "model"), task.metric
    test = result.get("test") or {}
    trivial = task.trivial_on("test")
    shape = ", ".join(f"{k}={v}" for k, v in sorted(model.items()) if k not in ("name", "d_in", "d_out"))
    options = ", ".join(f"{k}={v}" for k, v in sorted(task_cfg.items()) if k != "name") or "defaults"
    front = ["---", "library_name: seqbench", f"tags: {_yaml(['seqbench', name, task_cfg['name'].split(':')[0]])}",
             f"model_name: {_yaml(name)}", f"params: {result['params']}", f"task: {_yaml(task_cfg['name'])}"]
    if config.get("data"):
        front.append(f"data_fingerprint: {_yaml(config['data'])}")
    front.append("metrics:")
    for k, v in test.items():
        front += [f"  - name: {_yaml(k)}", "    split: test", f"    value: {v:.6g}"]
    front.append(f"trivial_baseline: {{metric: {_yaml(metric.name)}, value: {trivial:.6g}}}")
    front.append("---")
    paper_value = task.paper.values.get(name)
    rows = [f"| {k} | {v:.6g} | {trivial:.6g} |" if k == metric.name else f"| {k} | {v:.6g} | |" for k, v in test.items()]
    body = [f"# {name} on {task_cfg['name']}", "",
            f"A {name} ({shape}) with {result['params']:,} parameters, trained by seqbench on `{task_cfg['name']}` "
            f"({options}).", "",
            "## Data", "",
            f"{task.source or task_cfg['name']}; splits train/valid/test "
            + "/".join(f"{task.num_samples(s):,}" for s in ("train", "valid", "test")) + " sequences."]
    if config.get("data"):
        body.append(f"Files it was trained on, by content (sha256): `{json.dumps(config['data'])}`.")
    if config.get("fitted"):
        body.append(f"Fitted on the training data (applied to new data by `seqbench predict`): "
                    f"{', '.join(sorted(config['fitted']))}.")
    body += ["", "## Metrics", "", f"Test split, the weights best on validation (epoch {result.get('best_epoch')}).",
             "", "| metric | value | trivial baseline |", "|---|---|---|", *rows, ""]
    if paper_value is not None:
        body += [f"The paper reports {paper_value:.6g} for {name} ({task.paper.note}).", ""]
    if task.trivial_note:
        body += [f"Trivial baseline: {task.trivial_note}.", ""]
    body += ["## Measured", "",
             f"- parameters: {result['params']:,}",
             f"- receptive field: {'unbounded (recurrent)' if result.get('receptive_field') is None else result['receptive_field']}",
             f"- training: {result.get('train_time', 0):.1f} s over {len(result.get('history') or [])} epochs at "
             f"{result.get('samples_per_sec', 0):,.0f} sequences/s ({train.get('optimizer')}, lr {train.get('lr')}, "
             f"batch {train.get('batch_size')}, device {train.get('device')})",
             "- the streaming step's latency and memory on a target: `seqbench profile` (see the docs)", "",
             "## Use", "", "`RUN` is this directory.", "", "```python", "import seqbench",
             "model = seqbench.load_model(\"RUN\")           # the best weights",
             "run = seqbench.Run.open(\"RUN\")              # config, fitted, result, predict, export",
             "```", "", "```bash",
             "seqbench predict RUN --input new.csv --out preds.csv",
             "seqbench export RUN --out step.onnx --streaming   # ONNX with the streaming state",
             "```", ""]
    return "\n".join(front + [""] + body)


def write_card(out: Path, task, result: dict[str, Any]) -> None:
    from seqbench.train.runs import CONFIG
    from seqbench.utils import atomic_write_text
    config = json.loads((out / CONFIG).read_text())
    atomic_write_text(out / CARD, model_card(config, result, task))
