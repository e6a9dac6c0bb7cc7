"""Reading the lessons results (notebook 06): the table, the seed noise, the verdict of
each row and the lessons in words, all computed from ``seglab/results/lessons.jsonl``, so
that they stay true when the rows are re-run (``python -m seglab.lessons run``)."""
from __future__ import annotations

from .lessons import RESULTS, _value, read_results

# a row whose compute per image is at most CHEAP (at least COSTLY) times the baseline's
CHEAP, COSTLY = 0.7, 1.5


def load(path=RESULTS) -> dict[str, dict]:
    """The result lines of ``path`` by row name, in the order of the file."""
    return {r["row"]: r for r in read_results(path)}


def seed_rows(results: dict[str, dict]) -> list[str]:
    """The rows that are the baseline with at most another seed (baseline, baseline_seed1,
    ...; a seed row added to ROWS counts too)."""
    return [n for n, r in results.items() if set(r["changes"]) <= {"seed"}]


def seed_noise(results: dict[str, dict]) -> tuple[float, float]:
    """(mean, spread = max - min) of val mIoU over the baseline's seeds that ran: the
    yardstick for "is this row's difference real?"."""
    values = [results[n]["val"]["miou"] for n in seed_rows(results) if results[n].get("val")]
    return (sum(values) / len(values), max(values) - min(values)) if values else (float("nan"), float("nan"))


def frequency_weighted_iou(confusion) -> float:
    """IoU of each class weighted by its share of the labelled pixels: dominated by road,
    sky and building, like pixel accuracy."""
    import torch

    from seglab.metrics import iou_per_class
    cm = torch.as_tensor(confusion)
    share = cm.sum(1).double() / cm.sum().clamp(min=1)
    return float(torch.nansum(share * iou_per_class(cm)))


def summary(results: dict[str, dict]) -> list[dict]:
    """One dict per row for a table: the change, the val scores, the difference from the
    baseline, and the cost (parameters, GFLOPs, measured images/s, wall and CPU minutes of
    training, and the machine's 1-minute load average when the row started)."""
    base = results.get("baseline", {}).get("val") or {}
    table = []
    for name, r in results.items():
        val = r.get("val") or {}
        miou = val.get("miou", float("nan"))
        table.append({
            "row": name, "change": ", ".join(f"{k}={_value(v)}" for k, v in r["changes"].items()) or "-",
            "mIoU": miou, "d_mIoU": miou - base.get("miou", float("nan")),
            "pix_acc": val.get("pixel_accuracy", float("nan")),
            "class_acc": val.get("mean_class_accuracy", float("nan")),
            "params_M": r["params"] / 1e6, "GFLOP/img": r["gflops_per_image"],
            "img/s": r["train_images_per_s"] or float("nan"),
            "train_min": r["train_wall_s"] / 60, "cpu_min": r["train_cpu_s"] / 60,
            "load": r["load_average"][0], "status": r["status"]})
    return table


def provenance(results: dict[str, dict]) -> list[dict]:
    """Per row: the commit, the machine (``seglab info``'s CPU class line), the date and the
    wall minutes of training plus evaluation."""
    return [{"row": n, "commit": r["code_version"], "machine": r["machine"]["device"], "date": r["date"][:10],
             "wall_min": (r["train_wall_s"] + r.get("eval_wall_s", 0.0)) / 60} for n, r in results.items()]


def verdicts(results: dict[str, dict]) -> list[dict]:
    """Per row that is not a seed of the baseline: its mIoU difference from the baseline,
    the verdict ("better", "worse" or "within the noise": a difference counts only when it
    is larger than the seed spread) and its compute per image relative to the baseline."""
    _, spread = seed_noise(results)
    seeds, base = seed_rows(results), results["baseline"]
    out = []
    for r in summary(results):
        if r["row"] in seeds or r["status"] != "ok":
            continue
        d = r["d_mIoU"]
        verdict = "within the noise" if abs(d) <= spread else ("better" if d > 0 else "worse")
        out.append({**r, "verdict": verdict,
                    "compute": results[r["row"]]["gflops_per_image"] / base["gflops_per_image"]})
    return out


def _rows(items: list[dict], what) -> str:
    return "; ".join(f"`{v['row']}` ({v['change']}) {what(v)}" for v in items)


def findings(results: dict[str, dict], rare_iou: float = 0.01) -> list[str]:
    """The lessons of the table in words (markdown), every figure computed from ``results``."""
    seeds = [results[n]["val"]["miou"] for n in seed_rows(results) if results[n].get("val")]
    spread = max(seeds) - min(seeds)
    rows = verdicts(results)
    out = [f"**The noise comes first.** The baseline's {len(seeds)} seeds score val mIoU {min(seeds):.3f} to "
           f"{max(seeds):.3f}, a spread of {spread:.3f}: a row counts as better or worse only when it differs "
           f"from the baseline by more than that."]
    for verdict in ("better", "worse"):
        moved = [v for v in rows if v["verdict"] == verdict]
        if moved:
            out.append(f"**{verdict.capitalize()} than the noise**: " + _rows(
                moved, lambda v: f"{v['d_mIoU']:+.3f} mIoU at {v['compute']:.2f} times the compute per image") + ".")
    if not any(v["verdict"] != "within the noise" for v in rows):
        out.append("**No row moves the mIoU by more than the seed spread** at this budget.")
    cheap = [v for v in rows if v["verdict"] == "within the noise" and v["compute"] <= CHEAP]
    if cheap:
        out.append("**Cheaper, and no worse that we can tell**: " + _rows(
            cheap, lambda v: f"{v['compute']:.2f} times the compute") + ". At this budget the saving is free.")
    costly = [v for v in rows if v["verdict"] == "within the noise" and v["compute"] >= COSTLY]
    if costly:
        out.append("**More compute, no visible gain**: " + _rows(
            costly, lambda v: f"{v['compute']:.2f} times the compute") + ".")
    ok = [r for r in summary(results) if r["status"] == "ok" and r["mIoU"] > 0]
    ratio = [r["pix_acc"] / r["mIoU"] for r in ok]
    miou, pix = [r["mIoU"] for r in ok], [r["pix_acc"] for r in ok]
    out.append(f"**Pixel accuracy flatters.** In every row it is {min(ratio):.1f} to {max(ratio):.1f} times the "
               f"mIoU (rows span mIoU {min(miou):.3f} to {max(miou):.3f}, pixel accuracy {min(pix):.3f} to "
               f"{max(pix):.3f}).")
    base = results["baseline"]["val"]
    weighted = [n for n, r in results.items() if r["config"].get("class_weights", "none") != "none" and r.get("val")]
    if weighted:
        out.append("**Class weights trade pixels for classes**: " + "; ".join(
            f"`{n}` changes the mean class accuracy by "
            f"{results[n]['val']['mean_class_accuracy'] - base['mean_class_accuracy']:+.3f} and pixel accuracy by "
            f"{results[n]['val']['pixel_accuracy'] - base['pixel_accuracy']:+.3f}" for n in weighted) + ".")
    plain = [r for n, r in results.items() if n not in weighted and r.get("val")]
    never = [c for c in base["iou"] if all((r["val"]["iou"][c] or 0.0) < rare_iou for r in plain)]
    if never:
        out.append(f"**Rare classes need help.** Without class weights, no row learns {', '.join(never)} "
                   f"(IoU below {rare_iou} in every such row).")
    losses = [r["train_loss"] for r in results.values() if len(r.get("train_loss", [])) >= 2]
    falling = sum(loss[-1] < loss[-2] for loss in losses)
    if losses:
        out.append(f"**Every model is still learning**: the training loss falls in the last epoch in {falling} of "
                   f"{len(losses)} rows. These are lessons about a short budget; a longer one may change them."
                   if falling == len(losses) else
                   f"The training loss falls in the last epoch in {falling} of {len(losses)} rows.")
    return out
