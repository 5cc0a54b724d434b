"""The comparison report: tables, per-case CSV, significance tests and matplotlib figures from finished runs.

Everything is read back from the run folders that :func:`pipeline.evaluation.run_bundle` fills (training
``summary.json`` and ``metrics.csv``; each evaluation's ``per_image.csv``, ``summary.json`` and ``cases/``), so a
report can be rewritten at any time without training again. Written to the report folder:

- ``report.md``: the model table (Dice, IoU, precision, recall, HD95 as mean ± std and median; parameters, training
  time, inference time per image), for several structures each structure's Dice, IoU and HD95 with its own
  significance tests, the effect of flip TTA and post-processing, paired significance tests, figures;
- ``per_case.csv``: one row per case, model and variant;
- ``summary.json``: the same numbers for programs;
- ``training_curves.png``, ``dice_boxplot.png``, ``variants.png`` and ``disagreement.png``.

Significance: a two-sided Wilcoxon signed-rank test over the cases (paired: every model sees the same cases), the
best model against each other one, with Holm's correction for the number of comparisons.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import monai
import numpy as np
import torch
from PIL import Image
from scipy.stats import wilcoxon

from pipeline.atomic import atomic_output, write_json
from pipeline.evaluation.comparison_runs import PLAIN, RunResult

__all__ = ["METRICS", "holm", "paired_test", "write_report"]

logger = logging.getLogger("pipeline.compare")

METRICS = ("dice", "iou", "precision", "recall", "hd95")
STRUCTURE_METRICS = ("dice", "iou", "hd95")
"""The per-structure columns of an evaluation of several structures (``dice_<structure>``...) that a report reads."""
"""Per-case metrics of the tables, in order; HD95 is in pixels of each image's native grid (lower is better)."""
ALPHA = 0.05


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of paired per-case scores.

    Args:
        a: scores of one model, one per case.
        b: scores of the other model on the same cases, in the same order.

    Returns:
        ``n`` (pairs with both scores finite), ``mean_difference`` and ``median_difference`` (a - b) and ``p_value``
        (1.0 when every difference is zero; NaN with fewer than 2 pairs).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    result = {
        "n": int(keep.sum()),
        "mean_difference": float(diff.mean()) if diff.size else math.nan,
        "median_difference": float(np.median(diff)) if diff.size else math.nan,
    }
    if diff.size < 2:
        result["p_value"] = math.nan
    elif not np.any(diff):
        result["p_value"] = 1.0
    else:
        result["p_value"] = float(wilcoxon(a[keep], b[keep]).pvalue)
    return result


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p_values, float)
    tested = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(p.shape, math.nan)
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (len(tested) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _stats(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "n_finite": 0}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,  # sample standard deviation
        "median": float(np.median(finite)),
        "n_finite": int(finite.size),
    }


class _Model:
    """One bundle's results, read from its run folder."""

    def __init__(self, result: RunResult) -> None:
        self.name = result.bundle
        self.result = result
        self.training = json.loads((result.training_dir / "summary.json").read_text())
        self.curves = _read_rows(result.training_dir / "metrics.csv")
        self.cases: dict[str, list[str]] = {}
        self.scores: dict[str, dict[str, np.ndarray]] = {}
        self.evaluation: dict[str, dict] = {}
        for variant, folder in result.evaluations.items():
            rows = _read_rows(folder / "per_image.csv")
            self.cases[variant] = [r["image"] for r in rows]
            keys = [*METRICS, "accuracy", *(f"{m}_{s}" for s in _structure_suffixes(rows) for m in STRUCTURE_METRICS)]
            self.scores[variant] = {m: np.array([_float(r.get(m)) for r in rows]) for m in keys}
            self.evaluation[variant] = json.loads((folder / "summary.json").read_text())

    def case_file(self, variant: str, index: int, part: str) -> Path:
        return self.result.evaluations[variant] / "cases" / f"{index:04d}_{part}.png"


def _structure_suffixes(rows: list[dict[str, str]]) -> list[str]:
    """The structures of an evaluation of several (``dice_right_lung``... columns): their column suffixes, in the
    report's order; none for one structure."""
    columns = rows[0] if rows else {}
    return [k.removeprefix("dice_") for k in columns if k.startswith("dice_")]


def _fmt(stats: dict[str, float], digits: int) -> str:
    if not stats["n_finite"]:
        return "n/a"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f} ({stats['median']:.{digits}f})"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _model_table(models: list[_Model]) -> list[str]:
    lines = [
        "| model | Dice | IoU | precision | recall | HD95 (px) | parameters | training | epochs (best) "
        "| inference / image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        cells = [_fmt(_stats(m.scores[PLAIN][k]), 1 if k == "hd95" else 4) for k in METRICS]
        params = m.training.get("num_parameters")
        best = (m.training.get("best") or {}).get("epoch")
        seconds = m.evaluation[PLAIN].get("seconds_per_image")
        cells += [
            f"{params / 1e6:.2f} M" if params else "n/a",
            _duration(m.training["wall_time_s"]),
            f"{m.training['epochs_run']} ({int(best) if best is not None else 'n/a'})",
            f"{seconds * 1000:.0f} ms" if seconds is not None else "n/a",
        ]
        lines.append(f"| {m.name} | {' | '.join(cells)} |")
    return lines


def _significance(models: list[_Model], metric: str = "Dice", key: str | None = None) -> tuple[list[str], list[dict]]:
    """Whether the best model by mean per-case ``key`` (default ``metric`` in lower case) beats each other one."""
    key = key or metric.lower()
    ranked = sorted(models, key=lambda m: -np.nanmean(m.scores[PLAIN][key]))
    best, others = ranked[0], ranked[1:]
    tests = [paired_test(best.scores[PLAIN][key], o.scores[PLAIN][key]) for o in others]
    adjusted = holm([t["p_value"] for t in tests])
    rows = []
    lines = [
        f"Best by mean per-case {metric}: **{best.name}**. Two-sided Wilcoxon signed-rank test over the paired cases "
        f"against each other model, Holm-corrected for {len(others)} comparison(s), significance level {ALPHA}.",
        "",
        f"| {best.name} vs | cases | mean difference | median difference | p | p (Holm) | significant |",
        "|---|---|---|---|---|---|---|",
    ]
    for other, test, p_holm in zip(others, tests, adjusted, strict=True):
        significant = bool(np.isfinite(p_holm) and p_holm < ALPHA)
        rows.append({"best": best.name, "other": other.name, "metric": key, **test, "p_holm": p_holm})
        rows[-1]["significant"] = significant
        lines.append(
            f"| {other.name} | {test['n']} | {test['mean_difference']:+.4f} | {test['median_difference']:+.4f} "
            f"| {test['p_value']:.2g} | {p_holm:.2g} | {'yes' if significant else 'no'} |"
        )
    return lines, rows


def _structures_section(models: list[_Model]) -> tuple[list[str], dict]:
    """Per-structure Dice, IoU and HD95 of each model, and for each structure whether the best model by its Dice is
    significantly better than each other one (Holm-corrected within the structure)."""
    structures = [k.removeprefix("dice_") for k in models[0].scores[PLAIN] if k.startswith("dice_")]
    structures = [s for s in structures if all(f"dice_{s}" in m.scores[PLAIN] for m in models)]
    if not structures:
        return [], {}
    lines = [
        "## Each structure",
        "",
        "Mean ± standard deviation (median) over the cases in which the structure counts: a case where it is absent "
        "from the label and from the prediction is left out (nothing to find, nothing found).",
        "",
        "| structure | model | Dice | IoU | HD95 (px) |",
        "|---|---|---|---|---|",
    ]
    summary: dict = {"metrics": {}, "significance": {}}
    for s in structures:
        for m in models:
            stats = {k: _stats(m.scores[PLAIN][f"{k}_{s}"]) for k in STRUCTURE_METRICS}
            summary["metrics"].setdefault(m.name, {})[s] = stats
            cells = [_fmt(stats[k], 1 if k == "hd95" else 4) for k in STRUCTURE_METRICS]
            lines.append(f"| {s.replace('_', ' ')} | {m.name} | {' | '.join(cells)} |")
    if len(models) > 1:
        for s in structures:
            test_lines, rows = _significance(models, f"Dice of the {s.replace('_', ' ')}", key=f"dice_{s}")
            lines += ["", f"### {s.replace('_', ' ')}", "", *test_lines]
            summary["significance"][s] = rows
    return [*lines, ""], summary


def _variants_table(models: list[_Model], variants: list[str]) -> tuple[list[str], list[dict]]:
    lines = [
        "| model | variant | IoU | Dice | HD95 (px) | IoU vs plain | p (Wilcoxon, IoU) |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for m in models:
        for v in variants:
            if v not in m.scores:
                continue
            s = m.scores[v]
            test = paired_test(s["iou"], m.scores[PLAIN]["iou"]) if v != PLAIN else None
            rows.append(
                {
                    "model": m.name,
                    "variant": v,
                    **{k: _stats(s[k])["mean"] for k in ("iou", "dice", "hd95")},
                    "iou_vs_plain": test,
                }
            )
            delta = f"{test['mean_difference']:+.4f}" if test else ""
            p = f"{test['p_value']:.2g}" if test else ""
            lines.append(
                f"| {m.name} | {v} | {rows[-1]['iou']:.4f} | {rows[-1]['dice']:.4f} | {rows[-1]['hd95']:.2f} "
                f"| {delta} | {p} |"
            )
    return lines, rows


def _per_case_csv(models: list[_Model], path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "model", "variant", *METRICS, "accuracy"])
        for m in models:
            for v, names in m.cases.items():
                for i, name in enumerate(names):
                    values = (m.scores[v][k][i] for k in (*METRICS, "accuracy"))
                    writer.writerow([name, m.name, v, *(f"{x:.6f}" for x in values)])


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _training_curves(models: list[_Model], path: Path) -> Path:
    figure, (loss_ax, iou_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for m in models:
        epochs = [_float(r.get("epoch")) for r in m.curves]
        loss_ax.plot(epochs, [_float(r.get("loss")) for r in m.curves], marker=".", label=m.name)
        iou_ax.plot(epochs, [_float(r.get("val_iou")) for r in m.curves], marker=".", label=m.name)
    loss_ax.set(title="training loss (DiceCE)", xlabel="epoch", ylabel="loss")
    iou_ax.set(title="validation IoU (native resolution)", xlabel="epoch", ylabel="IoU")
    for ax in (loss_ax, iou_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(figure, path)


def _boxplot(models: list[_Model], path: Path, variant: str = PLAIN) -> Path:
    figure, ax = plt.subplots(figsize=(1.8 * len(models) + 2, 4.5))
    data = [m.scores[variant]["dice"][np.isfinite(m.scores[variant]["dice"])] for m in models]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(models) + 1), [f"{m.name}\n({len(d)} cases)" for m, d in zip(models, data, strict=True)])
    rng = np.random.default_rng(0)
    for k, values in enumerate(data, start=1):
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.5, color="black", zorder=3)
    ax.set(title="per-case Dice (box: quartiles, triangle: mean)", ylabel="Dice")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _variants_plot(models: list[_Model], variants: list[str], path: Path) -> Path:
    figure, ax = plt.subplots(figsize=(1.8 * len(models) + 2, 4))
    width = 0.8 / len(variants)
    for j, v in enumerate(variants):
        means = [np.nanmean(m.scores[v]["iou"]) if v in m.scores else np.nan for m in models]
        bars = ax.bar(np.arange(len(models)) + (j - (len(variants) - 1) / 2) * width, means, width, label=v)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    finite = [np.nanmean(m.scores[v]["iou"]) for m in models for v in variants if v in m.scores]
    ax.set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.02) + 0.03)
    ax.set_xticks(range(len(models)), [m.name for m in models])
    ax.set(title="mean IoU: flip TTA and post-processing", ylabel="IoU")
    ax.legend(ncols=len(variants), fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _disagreement(models: list[_Model], count: int) -> list[tuple[int, float]]:
    """Cases by how much the models' plain predictions disagree: 1 - |intersection| / |union| of all masks."""
    scores = []
    for i in range(len(models[0].cases[PLAIN])):
        preds = [np.asarray(Image.open(m.case_file(PLAIN, i, "pred"))) > 0 for m in models]
        union = np.logical_or.reduce(preds).sum()
        scores.append((i, 1.0 - np.logical_and.reduce(preds).sum() / union if union else 0.0))
    return sorted(scores, key=lambda s: -s[1])[:count]


def _disagreement_figure(models: list[_Model], picks: list[tuple[int, float]], path: Path) -> Path:
    columns = 2 + len(models)
    figure, axes = plt.subplots(len(picks), columns, figsize=(2.6 * columns, 2.8 * len(picks)), squeeze=False)
    for row, (i, score) in enumerate(picks):
        first = models[0]
        image = np.asarray(Image.open(first.case_file(PLAIN, i, "image")))
        label = np.asarray(Image.open(first.case_file(PLAIN, i, "label"))) > 0
        panels = [("image", None, None), ("ground truth", label, "lime")]
        panels += [(m.name, np.asarray(Image.open(m.case_file(PLAIN, i, "pred"))) > 0, "red") for m in models]
        for col, (title, mask, color) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", interpolation="nearest")
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors=color, linewidths=0.8)
            if col >= 2:
                title += f"\nDice {models[col - 2].scores[PLAIN]['dice'][i]:.3f}"
            elif col == 0:
                title = f"{Path(first.cases[PLAIN][i]).name}\ndisagreement {score:.2f}"
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    figure.suptitle("cases where the models disagree most (green: ground truth, red: prediction)", fontsize=10)
    return _save(figure, path)


def write_report(
    results: Sequence[RunResult],
    output_dir: str | Path,
    dataset_dir: str = "",
    bundle_args: Sequence[str] = (),
    num_disagreement_cases: int = 4,
) -> Path:
    """Write the comparison report of finished runs.

    Args:
        results: one per bundle, from :func:`pipeline.evaluation.run_bundle`; failed ones are listed, not compared.
        output_dir: the report folder.
        dataset_dir: the dataset, as given on the command line (shown in the report).
        bundle_args: the arguments every bundle command got (shown in the report).
        num_disagreement_cases: rows of ``disagreement.png``.

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: when the models were evaluated on different cases (then no paired comparison is possible).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    models = [_Model(r) for r in results if r.error is None and PLAIN in r.evaluations]
    failed = [r for r in results if r.error is not None or PLAIN not in r.evaluations]
    lines = [
        "# Model comparison",
        "",
        f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
        f"({'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}); torch "
        f"{torch.__version__}, MONAI {monai.__version__}.",
        f"Dataset: `{dataset_dir}`; every bundle command got: `{' '.join(bundle_args) or '(defaults)'}`.",
        "",
    ]
    summary: dict = {"dataset_dir": dataset_dir, "bundle_args": list(bundle_args), "models": {}, "failed": {}}
    for r in failed:
        lines.append(f"- **{r.bundle} failed**: {r.error or 'no plain evaluation'} (log in `{r.run_dir}`).")
        summary["failed"][r.bundle] = r.error
    if not models:
        lines.append("No model finished; nothing to compare.")
        (output_dir / "report.md").write_text("\n".join(lines) + "\n")
        return output_dir / "report.md"
    reference = models[0].cases[PLAIN]
    for m in models:
        for variant, cases in m.cases.items():
            if cases != reference:
                raise ValueError(
                    f"{m.name} ({variant}) was evaluated on other cases than {models[0].name} (plain); every "
                    "evaluation must use the same split: run the comparison again with --force."
                )
    variants = [v for v in models[0].scores if all(v in m.scores for m in models)]

    lines += [
        f"Evaluated on {len(reference)} validation cases at each image's native resolution (the prediction is mapped "
        "back to the image grid before scoring). Cells: mean ± standard deviation (median) over the cases. "
        "Training time is the wall time of the training run; inference time is the evaluation's wall time per image "
        "(loading, preprocessing, sliding-window inference, resampling back, metrics), batch 1.",
        "",
        "The scores are optimistic for every model alike: each model's weights are those of the epoch with the best "
        "IoU on these same validation cases, and early stopping watches them too. For figures to publish, evaluate "
        "the chosen models on a held-out test set (`evaluate.json --dataset_dir <test data> --split all`).",
        "",
        "## Models (plain: no TTA, no post-processing)",
        "",
        *_model_table(models),
        "",
        "## Is the best model significantly better?",
        "",
    ]
    significance_lines, significance = _significance(models)
    lines += significance_lines
    structure_lines, structure_summary = _structures_section(models)
    lines += ["", *structure_lines] if structure_lines else []
    variant_lines, variant_rows = _variants_table(models, variants)
    lines += [
        "",
        "## Flip TTA and post-processing",
        "",
        "`tta`: probabilities averaged over the image and its flips; `post`: largest connected components kept and "
        "holes filled. Differences are paired over the same cases; the p-values (Wilcoxon signed-rank, IoU against "
        "the same model's plain variant) are not corrected for the number of tests.",
        "",
        *variant_lines,
        "",
    ]

    _per_case_csv(models, output_dir / "per_case.csv")
    figures = {
        "training curves": _training_curves(models, output_dir / "training_curves.png"),
        "per-case Dice": _boxplot(models, output_dir / "dice_boxplot.png"),
        "TTA and post-processing": _variants_plot(models, variants, output_dir / "variants.png"),
    }
    picks = _disagreement(models, num_disagreement_cases) if len(models) > 1 and num_disagreement_cases > 0 else []
    if picks:
        figures["where the models disagree"] = _disagreement_figure(models, picks, output_dir / "disagreement.png")
    lines += ["## Figures", ""]
    lines += [f"### {title}\n\n![{title}]({path.name})\n" for title, path in figures.items()]
    lines += ["Per-case scores of every model and variant: `per_case.csv`. Runs and logs: `runs/<model>/`."]

    for m in models:
        summary["models"][m.name] = {
            "training": {k: m.training.get(k) for k in ("epochs_run", "wall_time_s", "num_parameters", "best")},
            "seconds_per_image": m.evaluation[PLAIN].get("seconds_per_image"),
            "metrics": {v: {k: _stats(m.scores[v][k]) for k in (*METRICS, "accuracy")} for v in variants},
        }
    summary["significance"] = significance
    if structure_summary:
        summary["structures"] = structure_summary
    summary["variants"] = variant_rows
    summary["disagreement"] = [{"image": reference[i], "disagreement": s} for i, s in picks]
    write_json(summary, output_dir / "summary.json")
    report = output_dir / "report.md"
    with atomic_output(report) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    logger.info("comparison of %d model(s) written to %s", len(models), report)
    return report
