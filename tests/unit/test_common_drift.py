"""house_prices.drift: reference bins, PSI, Jensen–Shannon distance and the drifting flag, hand-checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from house_prices import drift


def test_deciles_of_one_to_ten_are_interpolated_like_numpy_and_give_one_value_per_bin() -> None:
    # Given the values 1..10 / When their reference is built
    values = [float(v) for v in range(1, 11)]
    reference = drift.build_reference(values)
    # Then the edges are the linear deciles (position q·9), numpy's default method
    assert reference.edges == pytest.approx((1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1))
    assert reference.edges == pytest.approx(tuple(np.quantile(values, drift.DECILES)))
    # And each of the ten bins (outer ones open-ended) holds one value
    assert reference.counts == (1,) * 10


def test_tied_deciles_are_deduplicated() -> None:
    # Given three 1s and a 2 (deciles 1, 1, …, 1.1, 1.4, 1.7)
    reference = drift.build_reference([1.0, 1.0, 1.0, 2.0])
    # Then equal deciles make one edge, and values equal to an edge count in the bin that starts there
    assert reference.edges == pytest.approx((1.0, 1.1, 1.4, 1.7))
    assert reference.counts == (0, 3, 0, 0, 1)


def test_values_outside_the_training_range_land_in_the_open_outer_bins() -> None:
    edges = (1.0, 2.0)
    assert [drift.bin_of(v, edges) for v in (-1e9, 0.999, 1.0, 1.5, 2.0, 1e9)] == [0, 0, 1, 1, 2, 2]


def test_psi_and_js_of_a_hand_checked_pair() -> None:
    # Given reference 50/50 and live 25/75
    # When compared / Then PSI = -0.25·ln 0.5 + 0.25·ln 1.5
    assert drift.psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-12)
    assert drift.psi([50, 50], [25, 75]) == pytest.approx(0.274653, abs=1e-6)
    # And JSD = ½ KL(p‖m) + ½ KL(q‖m) with m = (0.375, 0.625): 0.033822, distance 0.18391
    assert drift.js_distance([50, 50], [25, 75]) == pytest.approx(0.183907, abs=1e-6)


def test_an_empty_bin_is_floored_at_epsilon_so_the_statistics_stay_finite() -> None:
    # Given disjoint distributions (each empty where the other is full)
    # Then PSI is finite: 2 · (1 − ε)/(1 + ε) · ln(1/ε) with ε = 1e-4
    eps = drift.EPSILON
    assert drift.psi([100, 0], [0, 100]) == pytest.approx(2 * (1 - eps) / (1 + eps) * math.log(1 / eps), rel=1e-9)
    # And the JS distance is just under its maximum √ln 2
    assert 0.83 < drift.js_distance([100, 0], [0, 100]) <= math.sqrt(math.log(2))


def test_mismatched_bins_and_bad_references_are_refused() -> None:
    with pytest.raises(ValueError, match="reference bins"):
        drift.psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="counts"):
        drift.Reference((1.0, 2.0), (1, 2))
    with pytest.raises(ValueError, match="increasing"):
        drift.Reference((2.0, 1.0), (1, 2, 3))
    with pytest.raises(ValueError, match="no counts"):
        drift.psi([0, 0], [1, 1])


def test_reference_round_trips_through_json() -> None:
    reference = drift.Reference((1.0, 2.5), (3, 0, 4))
    assert drift.Reference.from_json(reference.to_json()) == reference


counts = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=20).filter(lambda c: sum(c) > 0)


@given(counts, st.integers(min_value=1, max_value=50))
def test_identical_distributions_give_no_drift(reference: list[int], scale: int) -> None:
    # Given live counts proportional to the reference (any total)
    live = [c * scale for c in reference]
    # Then both statistics are ~0
    assert drift.psi(reference, live) == pytest.approx(0, abs=1e-9)
    assert drift.js_distance(reference, live) == pytest.approx(0, abs=1e-6)


@given(
    counts.flatmap(lambda r: st.tuples(st.just(r), st.lists(st.integers(0, 10_000), min_size=len(r), max_size=len(r))))
)
def test_statistics_are_non_negative_and_js_is_bounded(pair: tuple[list[int], list[int]]) -> None:
    reference, live = pair
    if sum(live) == 0:
        return
    assert drift.psi(reference, live) >= -1e-12
    assert 0 <= drift.js_distance(reference, live) <= math.sqrt(math.log(2)) + 1e-12


REFERENCES = {"A": drift.Reference((1.0,), (50, 50)), "B": drift.Reference((1.0,), (50, 50))}


def test_a_shifted_feature_flags_its_city_model_once_the_sample_is_large_enough() -> None:
    thresholds = drift.Thresholds(psi=0.2, js=0.1, min_count=100)
    # Given feature A moved to 25/75 (PSI 0.27, JS 0.18) and B unchanged, over 100 predictions
    report = drift.drift_report(REFERENCES, {"A": [25, 75], "B": [50, 50]}, thresholds)
    # Then A drifts, B does not, and the model is drifting
    assert report.count == 100
    assert [(f.feature, f.drifting) for f in report.features] == [("A", True), ("B", False)]
    assert report.drifting
    assert report.to_json()["features"]["A"] == {"psi": 0.274653, "js": 0.183908, "drifting": True}
    # And with the same proportions over 40 predictions (below the minimum) nothing is flagged
    small = drift.drift_report(REFERENCES, {"A": [10, 30], "B": [20, 20]}, thresholds)
    assert small.count == 40
    assert not small.drifting
    assert not any(f.drifting for f in small.features)
    assert small.features[0].psi == pytest.approx(report.features[0].psi)


def test_either_statistic_over_its_threshold_makes_a_feature_drift() -> None:
    # Given a 25/75 live split: PSI 0.27, JS 0.18
    live = {"A": [25, 75]}
    # Then a PSI threshold above it alone still drifts on JS, and the reverse
    assert drift.drift_report(REFERENCES, live, drift.Thresholds(psi=1.0, js=0.1, min_count=1)).drifting
    assert drift.drift_report(REFERENCES, live, drift.Thresholds(psi=0.2, js=0.5, min_count=1)).drifting
    # And above both it does not
    assert not drift.drift_report(REFERENCES, live, drift.Thresholds(psi=1.0, js=0.5, min_count=1)).drifting


def test_features_without_live_counts_are_skipped() -> None:
    report = drift.drift_report(REFERENCES, {"A": [0, 0]})
    assert report.count == 0
    assert report.features == ()
    assert not report.drifting


def test_live_increments_bin_each_feature_and_skip_missing_values() -> None:
    references = {"A": drift.Reference((1.0,), (5, 5)), "B": drift.Reference((10.0, 20.0), (1, 1, 1))}
    # Given two rows, the second without B and with a non-finite A
    rows = [{"A": 0.5, "B": 15.0}, {"A": float("nan")}]
    # When counted / Then each row counts once in drift_n, each present finite value in its bin
    increments = drift.live_increments(rows, references)
    assert increments == {"drift_n": 2, "drift_A_0": 1, "drift_B_1": 1}
    # And read back per feature in reference-bin order, missing bins as 0
    assert drift.live_counts(increments, references) == {"A": [1, 0], "B": [0, 1, 0]}


def test_references_come_from_recorded_metrics_and_bad_ones_are_skipped() -> None:
    metrics = {"reference": {"A": {"edges": [1, 2], "counts": [1, 2, 3]}, "B": {"edges": [2, 1], "counts": [1, 1, 1]}}}
    assert drift.references_from_metrics(metrics) == {"A": drift.Reference((1.0, 2.0), (1, 2, 3))}
    assert drift.references_from_metrics({"validation": {}}) == {}
    assert drift.references_from_metrics(None) == {}


def test_a_saved_report_is_read_back_from_dynamodbs_typed_json() -> None:
    item = {
        "drift": {
            "M": {
                "count": {"N": "450"},
                "drifting": {"BOOL": True},
                "features": {
                    "M": {"A": {"M": {"psi": {"N": "0.25"}, "js": {"N": "0.18"}, "drifting": {"BOOL": True}}}}
                },
            }
        }
    }
    assert drift.report_from_item(item) == {
        "count": 450,
        "drifting": True,
        "features": {"A": {"psi": 0.25, "js": 0.18, "drifting": True}},
    }
    assert drift.report_from_item({}) is None
