"""The champion's choice: metrics/<backbone>.json of every compared backbone -> the backbone to register, and why.

compare writes the reason into the comparison and register registers the backbone: both call
`choose`, so they cannot disagree. On small data (evaluate cross-validated: cv_* metrics) the choice
is made on register.small_data_metric, and a backbone whose score lies inside the best one's 95%
interval is within noise of it: of those, the cheapest (latency, then model size) wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from pipeline import config
from pipeline.io import read_json


@dataclass
class Choice:
    backbone: str
    metric: str  # what it was chosen on: register.metric, or register.small_data_metric when cross-validated
    scores: dict[str, float]  # that metric, per compared backbone
    reason: str  # one sentence, for the comparison and the log


def choose(cfg: DictConfig) -> Choice:
    metrics = {name: read_json(config.metrics_file(cfg, name)) for name in cfg.compare}
    cross_validated = all(cfg.register.small_data_metric in m for m in metrics.values())
    metric = cfg.register.small_data_metric if cross_validated else cfg.register.metric
    scores = {name: m[metric] for name, m in metrics.items()}
    greater = cfg.register.greater_is_better
    best = (max if greater else min)(scores, key=scores.get)  # on a tie the first listed, the cheapest
    if not cross_validated:
        return Choice(best, metric, scores, f"{best} has the best {metric} ({scores[best]:.4g}).")

    low, high = metrics[best][f"{metric}_low"], metrics[best][f"{metric}_high"]
    within_noise = [name for name, score in scores.items() if low <= score <= high]

    def cost(name: str) -> tuple[float, float]:
        return metrics[name]["latency_ms_per_image"], metrics[name]["model_size_mb"]

    cheapest = min(within_noise, key=cost)
    interval = f"{best}'s {metric} is {scores[best]:.3f} (95% interval {low:.3f} to {high:.3f}, over {metrics[best]['cv_images']:.0f} photos)"
    if cheapest == best:
        others = [name for name in within_noise if name != best]
        noise = f"; {', '.join(others)} within noise of it but not cheaper" if others else "; no other backbone within it"
        return Choice(best, metric, scores, f"{best} is chosen: {interval}{noise}.")
    return Choice(cheapest, metric, scores, (
        f"{cheapest} is chosen: {interval}, and {cheapest}'s {scores[cheapest]:.3f} lies inside it, so the two are within noise of each "
        f"other and the cheaper one wins ({cost(cheapest)[0]:.1f} ms and {cost(cheapest)[1]:.1f} MB against {cost(best)[0]:.1f} ms and {cost(best)[1]:.1f} MB)."
    ))
