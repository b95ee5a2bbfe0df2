"""Markdown tables of one ``python -m benchmarks.run`` result (the README's benchmark section is
pasted from them). Missing figures print as ``-``; a failed section prints its error."""
from __future__ import annotations

from typing import Any, Sequence


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _failed(section: Any) -> str | None:
    if isinstance(section, dict) and ("error" in section or "skipped" in section):
        return section.get("error") or f"skipped ({section['skipped']})"
    return None


def _engine(results: dict) -> list[str]:
    engine, ner = results.get("engine"), results.get("ner")
    out = ["### Engine, one process, one thread"]
    if _failed(engine):
        return out + [_failed(engine)]
    runs = [("first", engine)]
    if isinstance(results.get("engine_after_spark"), dict) and not _failed(results["engine_after_spark"]):
        runs.append(("after the local Spark modes", results["engine_after_spark"]))
    out.append(table(["run", "notes", "words", "seconds", "notes/s", "words/s", "entities", "stage share"],
                     [[name, run["notes"], run["words"], run["seconds"], run["notes_per_s"], run["words_per_s"],
                       run["entities"], ", ".join(f"{k} {v:.0%}" for k, v in run["stage_share"].items())]
                      for name, run in runs]))
    if isinstance(ner, dict) and not _failed(ner):
        out += ["", "NER stages alone (sentences given):", "",
                table(["model", "batch-invariant", "words/s", "entities"],
                      [[v["model"], v["batch_invariant"], v["words_per_s"], v["entities"]] for v in ner.values()])]
    return out


def _spark(results: dict) -> list[str]:
    out, rows, missing = ["### Spark: the annotate job (gate off), fixed costs apart"], [], []
    for group in ("spark", "cluster"):
        section = results.get(group)
        if _failed(section) or not isinstance(section, dict):
            missing.append(f"{group}: {_failed(section) or 'not run'}")
            continue
        for mode, run in section.items():
            if "error" in run:
                rows.append([mode, run["error"], None, None, None, None, None, None])
            else:
                rows.append([mode, run["notes"], run["start_s"], run["first_job_s"], run["fixed_s"], run["seconds"],
                             run["notes_per_s"], run["notes_per_s_per_core"]])
    if rows:
        out.append(table(["mode", "notes", "session start s", "first 2-note job s (workers start)",
                          "2-note job s (fixed per run)", "job s", "notes/s", "notes/s per core"], rows))
    return out + missing


def _long_and_memory(results: dict) -> list[str]:
    out = ["### Long notes and memory"]
    rows = results.get("long")
    if _failed(rows) or not isinstance(rows, list):
        out.append(f"long notes: {_failed(rows) or 'not run'}")
    else:
        out.append(table(["characters", "words", "entities", "seconds", "seconds per 1k chars"],
                         [[r["chars"], r["words"], r["entities"], r["seconds_per_note"], r["seconds_per_1k_chars"]]
                          for r in rows]))
    memory = results.get("memory")
    if _failed(memory) or not isinstance(memory, dict):
        out.append(f"memory: {_failed(memory) or 'not run'}")
    else:
        out += ["", table(["worker process", "notes", "characters", "RSS after build MB", "peak RSS MB"],
                          [[k.replace("_", " "), v["notes"], v["chars"], v["rss_mb_after_build"], v["peak_rss_mb"]]
                           for k, v in memory.items()])]
    return out


def _peers(results: dict) -> list[str]:
    out = ["### Peers, same notes, one thread each"]
    spacy, ner = results.get("spacy"), results.get("ner") or {}
    if _failed(spacy) or not isinstance(spacy, dict):
        out.append(f"spaCy: {_failed(spacy) or 'not run'}")
    else:
        ours = ner.get("ncbi_disease", {}) if isinstance(ner, dict) else {}
        f1 = spacy.get("devel_f1", {})
        out.append(table(["NCBI-disease NER", "devel strict F1", "words/s on the notes", "training"],
                         [[spacy.get("peer", "spaCy"), f1.get("spacy"), _get(spacy, "speed", "words_per_s"),
                           _training(spacy.get("training"))],
                          ["clinlake ncbi_disease", f1.get("clinlake_ncbi_disease"), ours.get("words_per_s"),
                           "shipped model"]]))
    medspacy = results.get("medspacy")
    if _failed(medspacy) or not isinstance(medspacy, dict):
        out.append(f"medspaCy: {_failed(medspacy) or 'not run'}")
    else:
        rates, kit = medspacy.get("entities_per_s", {}), medspacy.get("kit_devel", {})
        out += ["", table(["assertion on the same entities", "entities/s", "kit Negated F1", "kit Historical F1",
                           "kit Not-particular F1"],
                          [[name, rate, _get(kit, name, "negated_f1"), _get(kit, name, "historical_f1"),
                            _get(kit, name, "not_particular_f1")] for name, rate in rates.items()])]
    nerdl = results.get("nerdl")
    if _failed(nerdl) or not isinstance(nerdl, dict):
        out.append(f"Spark NLP NerDL: {_failed(nerdl) or 'not run'}")
    else:
        f1, speed = nerdl.get("devel_f1", {}), nerdl.get("speed", {})
        out += ["", table(["NCBI-disease NER in one Spark session", "devel strict F1", "words/s per core"],
                          [[nerdl.get("peer", "Spark NLP NerDL"), f1.get("nerdl"), speed.get("nerdl_words_per_s")],
                           ["clinlake ncbi_disease (mapInArrow)", f1.get("clinlake_ncbi_disease"),
                            speed.get("clinlake_ner_words_per_s")]])]
    return out


def _training(training: Any) -> str:
    if not isinstance(training, dict):
        return "-"
    return f"{training.get('steps')} steps, {training.get('seconds')} s"


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


# What each ratio of benchmarks.run.ratios says, and the bar issue 18 set for it (None: no bar).
RATIOS: dict[str, tuple[str, str | None]] = {
    "spark_overhead_local1_over_engine": ("seconds per note, Spark local[1] job / engine alone (mean of the engine "
                                          "runs before and after the Spark modes)", "<= 1.10"),
    "spark_overhead_local1_over_engine_fixed_cost_apart": (
        "the same, less the fixed cost of a run (a 2-note job's time)", None),
    "engine_drift_after_spark_over_before": (
        "seconds, the engine run after the local Spark modes / the one before (1.0: no drift)", None),
    "scaling_local2_over_local1": ("notes/s, local[2] / local[1]", ">= 1.85"),
    "scaling_cluster2_over_cluster1": ("notes/s, standalone cluster 2 workers / 1 worker", None),
    "pipeline_words_per_s_over_spacy_ner": ("words/s, whole pipeline (NER + assertion) / spaCy NER alone", ">= 2"),
    "ncbi_ner_stage_over_spacy_ner": ("words/s, ncbi_disease NER stage / spaCy NER, same notes", ">= 3"),
    "hybrid_assertion_over_medspacy": ("entities/s, hybrid assertion / medspaCy ConText, same entities", ">= 10"),
    "rules_assertion_over_medspacy": ("entities/s, ConText rules / medspaCy ConText, same entities", None),
    "ncbi_ner_stage_over_nerdl_same_spark": ("words/s per core, ncbi_disease / Spark NLP NerDL, one Spark", ">= 3"),
    "long_note_cost_per_char_largest_over_1k": ("seconds per 1k chars, 1M-char note / 1k-char note",
                                                "0.75 - 1.25"),
}


def _machine(machine: Any) -> str:
    if not isinstance(machine, dict):
        return str(machine)
    cpu = machine.get("cpu_model") or machine.get("processor")
    return (f"{machine.get('cpu_count')} CPUs{f' ({cpu})' if cpu else ''}, {machine.get('platform')}, "
            f"Python {machine.get('python')}")


def _ratio_rows(ratios: dict) -> list[list[Any]]:
    return [[name, value, *RATIOS.get(name, ("", None))] for name, value in ratios.items()]


def markdown(results: dict) -> str:
    parts = [f"## clinlake benchmarks ({results.get('profile')} run, {results.get('when')})",
             f"Machine: {_machine(results.get('machine'))}. Command: `{str(results.get('command')).strip()}`.", ""]
    for block in (_engine, _spark, _long_and_memory, _peers):
        parts += block(results) + [""]
    parts += ["### Ratios (figures of this run only)",
              table(["ratio", "value", "what it divides", "issue 18's bar"], _ratio_rows(results.get("ratios") or {})),
              "",
              "### Cost (extrapolated from the per-core rates above, notes of the sample's mean size)",
              table(["path", "notes/s per core", "core-hours, 1M notes", "core-hours, 100M notes"],
                    [[r["path"], r["notes_per_s_per_core"], r["core_hours_1,000,000_notes"],
                      r["core_hours_100,000,000_notes"]] for r in results.get("cost") or []])]
    return "\n".join(parts) + "\n"
