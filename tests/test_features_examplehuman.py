"""Per-object measurements against CellProfiler 4.0.6's own output on its ExampleHuman field.

Objects are matched by centre (no masks are published); our nuclei are segmented with the
settings of ``ExampleHuman.cppipe`` (minimum cross-entropy threshold, diameters 8-80 px,
border objects discarded). CellProfiler scales 8-bit intensities to 0..1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_features.datasets import read_image
from moa_features.features.site import site_objects

from _helpers import match_by_centre

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cellprofiler_examplehuman"
CHANNELS = ("DNA", "PH3", "cellbody")

pytestmark = pytest.mark.skipif(not (DATA / "Nuclei.csv").exists(), reason=f"ExampleHuman data not found at {DATA}")


@pytest.fixture(scope="module")
def matched():
    image = np.stack([read_image(DATA / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)])
    objects, _ = site_objects(image, CHANNELS, 0, 2, threshold="li", min_diameter=8, max_diameter=80)
    theirs = pd.read_csv(DATA / "Nuclei.csv")
    ours_xy = np.column_stack([objects["Location_Center_X"], objects["Location_Center_Y"]])
    i, j = match_by_centre(ours_xy, theirs[["Location_Center_X", "Location_Center_Y"]].to_numpy(), 5.0)
    return objects, theirs, i, j


def test_most_cellprofiler_nuclei_are_matched(matched):
    _, theirs, i, _ = matched
    assert len(theirs) == 289
    assert len(i) / len(theirs) >= 0.85


@pytest.mark.parametrize(
    "ours, column, scale, limit",
    [
        ("Nuclei_AreaShape_Area", "AreaShape_Area", 1, 0.10),
        ("Nuclei_Intensity_MeanIntensity_DNA", "Intensity_MeanIntensity_DNA", 255, 0.05),
        ("Nuclei_Intensity_IntegratedIntensity_DNA", "Intensity_IntegratedIntensity_DNA", 255, 0.05),
        ("Nuclei_Intensity_MeanIntensity_PH3", "Intensity_MeanIntensity_PH3", 255, 0.05),
        ("Nuclei_Intensity_IntegratedIntensity_PH3", "Intensity_IntegratedIntensity_PH3", 255, 0.05),
    ],
)
def test_matched_nuclei_agree_with_cellprofiler(matched, ours, column, scale, limit):
    objects, theirs, i, j = matched
    rel = np.abs(objects[ours][i] / scale - theirs[column].to_numpy()[j]) / np.abs(theirs[column].to_numpy()[j])
    assert np.median(rel) <= limit


def test_identical_objects_give_cellprofilers_intensity_statistics(matched):
    """Where our nucleus is CellProfiler's (same area and integrated DNA), every intensity measure agrees."""
    objects, theirs, i, j = matched
    same = (objects["Nuclei_AreaShape_Area"][i] == theirs["AreaShape_Area"].to_numpy()[j]) & np.isclose(
        objects["Nuclei_Intensity_IntegratedIntensity_DNA"][i] / 255,
        theirs["Intensity_IntegratedIntensity_DNA"].to_numpy()[j],
    )
    assert same.sum() >= 100
    for measure in ("Std", "Min", "Max", "LowerQuartile", "Median", "MAD", "UpperQuartile"):
        for channel in ("DNA", "PH3"):
            name = f"Intensity_{measure}Intensity_{channel}"
            np.testing.assert_allclose(
                objects[f"Nuclei_{name}"][i][same] / 255,
                theirs[name].to_numpy()[j][same],
                rtol=1e-5,
                atol=1e-6,
                err_msg=name,
            )
    for name in ("Intensity_IntegratedIntensityEdge_DNA", "Intensity_MeanIntensityEdge_PH3"):
        np.testing.assert_allclose(
            objects[f"Nuclei_{name}"][i][same] / 255, theirs[name].to_numpy()[j][same], rtol=1e-5
        )
    ours, cp = objects["Nuclei_Intensity_MassDisplacement_DNA"][i], theirs["Intensity_MassDisplacement_DNA"]
    np.testing.assert_allclose(ours[same], cp.to_numpy()[j][same], rtol=1e-4, atol=1e-6)
    for name in ("Perimeter", "FormFactor", "Eccentricity", "MajorAxisLength", "MinorAxisLength", "Extent"):
        ours, cp = objects[f"Nuclei_AreaShape_{name}"][i], theirs[f"AreaShape_{name}"]
        np.testing.assert_allclose(ours[same], cp.to_numpy()[j][same], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "compartment, column, scale, limit",
    [  # issue 21's bounds; Propagation and the shrunk-nucleus cytoplasm reproduce CellProfiler's objects
        ("Cells", "AreaShape_Area", 1, 0.02),
        ("Cytoplasm", "AreaShape_Area", 1, 0.03),
        ("Cells", "Intensity_MeanIntensity_DNA", 255, 0.02),
        ("Cells", "Intensity_MassDisplacement_DNA", 1, 0.02),
        ("Cytoplasm", "Intensity_MeanIntensity_DNA", 255, 0.02),
    ],
)
def test_matched_cells_and_cytoplasm_agree_with_cellprofiler(matched, compartment, column, scale, limit):
    objects, theirs, i, j = matched
    table = pd.read_csv(DATA / f"{compartment}.csv").set_index("ObjectNumber")
    expected = table.loc[theirs["ObjectNumber"].to_numpy()[j], column].to_numpy()
    rel = np.abs(objects[f"{compartment}_{column}"][i] / scale - expected) / np.abs(expected)
    assert np.median(rel) <= limit


def test_most_matched_cells_are_cellprofilers_pixel_for_pixel(matched):
    """Same area, perimeter and integrated DNA for most matched cells and cytoplasms: the same objects
    (where the nuclei are the same; a different nucleus, split or merged otherwise, grows a different cell)."""
    objects, theirs, i, j = matched
    for compartment in ("Cells", "Cytoplasm"):
        table = pd.read_csv(DATA / f"{compartment}.csv").set_index("ObjectNumber")
        table = table.loc[theirs["ObjectNumber"].to_numpy()[j]]
        same = (
            (objects[f"{compartment}_AreaShape_Area"][i] == table["AreaShape_Area"].to_numpy())
            & np.isclose(objects[f"{compartment}_AreaShape_Perimeter"][i], table["AreaShape_Perimeter"].to_numpy())
            & np.isclose(
                objects[f"{compartment}_Intensity_IntegratedIntensity_DNA"][i] / 255,
                table["Intensity_IntegratedIntensity_DNA"].to_numpy(),
            )
        )
        assert same.mean() >= 0.7, compartment  # 75 %: the rest grow from a nucleus that differs
