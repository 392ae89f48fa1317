"""The whole feature set on real RxRx1 sites: 18 rows, 18 clear errors, cell types separate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_features import schema
from moa_features.extract import extract


@pytest.fixture(scope="module")
def rxrx1_table(tmp_path_factory, rxrx1_root):
    out = tmp_path_factory.mktemp("rxrx1") / "rxrx1.parquet"
    result = extract(rxrx1_root, out, thumbs=None, progress=False)
    return result, pd.read_parquet(out)


def leave_one_plate_out_nearest_centroid(df: pd.DataFrame, label: str, group: str) -> float:
    """Accuracy of a nearest-centroid classifier, each plate predicted by the others only.

    Features are z-scored with the training plates' mean and SD (never the test plate's).
    """
    features = [c for c in schema.feature_columns(df.columns) if df[c].notna().all()]
    X, y, g = df[features].to_numpy(float), df[label].to_numpy(), df[group].to_numpy()
    correct = 0
    for plate in np.unique(g):
        train, test = g != plate, g == plate
        mu, sd = X[train].mean(0), X[train].std(0)
        keep = sd > 0
        Z = (X[:, keep] - mu[keep]) / sd[keep]
        classes = np.unique(y[train])
        centroids = np.stack([Z[train & (y == c)].mean(0) for c in classes])
        d = ((Z[test][:, None, :] - centroids[None]) ** 2).sum(-1)
        correct += (classes[d.argmin(1)] == y[test]).sum()
    return correct / len(y)


def test_rxrx1_rows_and_errors(rxrx1_table):
    result, df = rxrx1_table
    assert (result.n_ok, result.n_failed) == (18, 18)
    errors = pd.read_parquet(result.errors)
    assert errors["error"].str.contains(r"B02_s2_w5\.png: file not found \(channel w5").all()
    families = {c.split("_")[0] + "_" + c.split("_")[1] for c in schema.feature_columns(df.columns)}
    assert {
        "Image_Intensity",
        "Image_Texture",
        "Image_Correlation",
        "Nuclei_AreaShape",
        "Cells_AreaShape",
        "Cytoplasm_Intensity",
    } <= families
    assert (df["Nuclei_Count"] > 20).all()


def test_cell_types_separate_on_held_out_plates(rxrx1_table):
    _, df = rxrx1_table
    acc = leave_one_plate_out_nearest_centroid(df, "Metadata_cell_type", schema.PLATE)
    majority = df["Metadata_cell_type"].value_counts(normalize=True).max()  # 6/18 HEPG2
    assert acc >= 0.8 > majority + 0.4, acc
    # label-shuffled control: the same procedure is near chance when labels carry no signal
    rng = np.random.default_rng(0)
    shuffled = df.assign(Metadata_cell_type=rng.permutation(df["Metadata_cell_type"].to_numpy()))
    assert leave_one_plate_out_nearest_centroid(shuffled, "Metadata_cell_type", schema.PLATE) < 0.6
