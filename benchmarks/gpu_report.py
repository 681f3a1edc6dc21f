"""The "## GPU" section of docs/BENCHMARKS.md from ``benchmarks/bench_gpu.py``'s JSON (CPU and GPU of one run)."""

from __future__ import annotations

from ingestion.modalities import MODALITIES

THROUGHPUT = [("pretrain", "pretrain (contrastive, CT/X-ray/EEG encoders)", "patients/s", "patients_per_s"),
              ("train_early", "train: frozen, early fusion (home)", "patient-epochs/s", "patient_epochs_per_s"),
              ("train_cross_attention_synthetic", "train: frozen, cross-attention (synthetic cohort)",
               "patient-epochs/s", "patient_epochs_per_s"),
              ("train_joint", "train: joint (encoders + fusion)", "patient-epochs/s", "patient_epochs_per_s")]


def _cell(x: float | None, fmt: str = "{:,.1f}") -> str:
    return "failed" if x is None else fmt.format(x)


def _ratio(cpu: float | None, gpu: float | None) -> str:
    return f"{gpu / cpu:.2f}x" if cpu and gpu else "-"


def fill_missing(result: dict, other: dict) -> list[str]:
    """Training rows that failed in ``result`` on both devices, taken from ``other`` (also CPU and GPU in one
    run); the stages filled in, which the table marks."""
    runs, filled = result["runs"], []
    for key, *_ in THROUGHPUT:
        if any(key in r for r in runs.values()):
            continue
        if all(key in other["runs"].get(d, {}) for d in runs):
            for d in runs:
                runs[d][key] = other["runs"][d][key]
                runs[d]["stages"][key] = other["runs"][d]["stages"][key]
                runs[d]["errors"] = [e for e in runs[d]["errors"] if e["stage"] != key]
            filled.append(key)
    return filled


def table_rows(cpu: dict, gpu: dict, filled: tuple[str, ...] = ()) -> list[str]:
    """One row per encode modality and training stage: items/s on the CPU and the GPU, and GPU/CPU."""
    rows = []
    for m in MODALITIES:
        c, g = cpu.get("encode", {}).get(m), gpu.get("encode", {}).get(m)
        if not (c or g):
            continue
        name = " / ".join(dict.fromkeys(x["encoder"] for x in (c, g) if x))
        cv, gv = (c or {}).get("items_per_s"), (g or {}).get("items_per_s")
        rows.append(f"| encode {m} ({name}, {(c or g)['items']} items) | items/s | {_cell(cv)} | {_cell(gv)} "
                    f"| {_ratio(cv, gv)} |")
    for key, label, unit, field in THROUGHPUT:
        cv, gv = cpu.get(key, {}).get(field), gpu.get(key, {}).get(field)
        mark = " (*)" if key in filled else ""
        rows.append(f"| {label}{mark} | {unit} | {_cell(cv)} | {_cell(gv)} | {_ratio(cv, gv)} |")
    for name in ("encode", "pretrain", "train_early", "train_cross_attention_synthetic", "train_joint", "evaluate"):
        cs, gs = cpu["stages"].get(name, {}), gpu["stages"].get(name, {})
        cv = cs.get("seconds") if cs.get("ok") else None
        gv = gs.get("seconds") if gs.get("ok") else None
        mark = " (*)" if name in filled else ""
        rows.append(f"| {name} stage, wall (incl. setup){mark} | s | {_cell(cv)} | {_cell(gv)} | {_ratio(gv, cv)} |")
    return rows


def render(result: dict, source: str, other: dict | None = None, other_source: str = "",
           old_paths: tuple[str, ...] = ()) -> str:
    """The "## GPU" section: the table, where it was measured, and what the CUDA paths did.

    ``other``: an earlier run on the same kind of machine that fills the training rows ``result`` lacks;
    ``old_paths``: what the operations the code did before the CUDA fixes raised there (gpu_run.sh's log).
    """
    filled = tuple(fill_missing(result, other)) if other else ()
    mach, runs = result["machine"], result["runs"]
    if "cuda" not in runs:
        return f"No GPU run recorded in {source} ({result.get('note', 'cuda not measured')})."
    cpu, gpu, args = runs["cpu"], runs["cuda"], result["args"]
    lines = [f"Measured by `benchmarks/bench_gpu.py` ({source}), CPU and GPU in the same run on one lent machine: "
             f"**{mach['gpu']}** ({mach['gpu_memory_gib']} GiB, CUDA {mach['cuda_version']}) and its "
             f"**{mach['cpu_count']}-core CPU** ({mach['host_cpu']}, torch {mach['torch']} with "
             f"{mach['torch_threads']} threads), Python {mach['python']}. Phantom cohort of "
             f"{result.get('home', {}).get('patients', args['patients'])} patients; pretraining {args['pretrain_epochs']} epochs, training up to {args['train_epochs']} "
             f"epochs (early stopping), joint {args['joint_epochs']} epochs, "
             + ("" if "train_cross_attention_synthetic" in filled else f"synthetic cohort {args['synthetic']} patients, ")
             + f"note encoder `{args['note_encoder']}`. Encode is the second, timed pass after a warm-up "
             "pass (CUDA context, cuDNN, the int8 note model); epochs/s exclude the first epoch. GPU/CPU above 1 "
             f"means the GPU was faster (for wall seconds: CPU time over GPU time). The CPU column is that machine's "
             f"{mach['cpu_count']} cores, not this project's 2-core machine, whose CPU figures are in the other "
             "sections (\"Encoders\", \"Notes\", \"Pipeline\"). " + args.get("remark", ""), "",
             "| stage | unit | CPU | GPU | GPU/CPU |", "|---|---|---|---|---|", *table_rows(cpu, gpu, filled), ""]
    if filled:
        oa = other["args"]
        lines.append(f"(*) From an earlier call ({other_source}) on another {other['machine']['gpu']} machine of the "
                     f"same kind, CPU and GPU again in one run ({oa['synthetic']} synthetic patients, "
                     f"{oa['train_epochs']} epochs): in the call above the synthetic cohort could not be built, "
                     "because `models.simulation.phantom_features` imports `ingestion.phantom`, which needs pydicom.")
        lines.append("")
    peaks = ", ".join(f"{k} {v['peak_gpu_mib']:,.0f} MiB" for k, v in gpu["stages"].items() if "peak_gpu_mib" in v)
    lines.append(f"- Peak GPU memory allocated by torch per stage: {peaks}.")
    if gpu.get("auto_batch"):
        lines.append("- Automatic batch size (`encode --batch-size 0`): GPU "
                     + ", ".join(f"{m} {b}" for m, b in gpu["auto_batch"].items())
                     + "; CPU " + ", ".join(f"{m} {b}" for m, b in cpu.get("auto_batch", {}).items())
                     + " (the note encoder keeps its device as a string and got the CPU's 16 on CUDA too, "
                     "before this benchmark's fix).")
    why = {"note": " (on the CPU the note encoder runs the int8 ONNX MiniLM, on CUDA float32 sentence-transformers: "
                   "two encoder versions, kept apart in the store)"}
    for m, a in sorted(result.get("cpu_vs_cuda_embeddings", {}).items()):
        lines.append(f"- {m} embeddings, GPU against CPU ({a['items']} items): cosine min {a['min_cosine']:.4f}, "
                     f"mean {a['mean_cosine']:.4f}, largest absolute difference {a['max_abs_diff']:.3g}{why.get(m, '')}.")
    for line in old_paths:
        lines.append(f"- Before this benchmark's fixes, on that GPU: {line}.")
    for device, run in runs.items():
        for e in run["errors"]:
            lines.append(f"- **{device} {e['stage']} failed:** `{e['error'][:200]}`")
    return "\n".join(lines)
