"""Writing a run folder (``models/RUN/``): the one place that writes it (``docs/architecture.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from moa_features.io import write_json, write_table
from moa_features.models import registry
from moa_features.training.data import TrainingData
from moa_features.training.fitting import FoldResults


def save_run(
    output: Path, result: dict[str, Any], folds: FoldResults, data: TrainingData, final: dict[str, Any] | None
) -> None:
    """Write the run folder (the one place that writes it): metrics, predictions, histories, models."""
    output.mkdir(parents=True, exist_ok=True)
    write_table(folds.predictions, output / "predictions.parquet")
    if data.activity is not None:
        write_table(data.activity, output / "activity.csv")
    write_json({k: v for k, v in folds.histories.items() if v}, output / "history.json")
    if folds.importance.any():
        imp = pd.DataFrame({"feature": data.feature_names, "importance": folds.importance})
        write_table(imp.sort_values("importance", ascending=False), output / "feature_importance.csv")
    if final is not None:
        joblib.dump(
            {"pipeline": final["preprocess"], "feature_names": data.feature_names, "classes": list(data.classes)},
            output / "preprocess.joblib",
        )
        for name, spec in registry.MODELS.items():
            if name not in final or spec.file is None:
                continue
            if hasattr(final[name], "save"):
                final[name].save(output / spec.file)
            else:
                joblib.dump(final[name], output / spec.file)
    write_json(result, output / "metrics.json")
