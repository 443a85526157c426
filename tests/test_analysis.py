"""metrics.analysis (the per-image record the dump stores, sums over images, files) and the command lines
`python -m metrics GT PRED --errors --boundary --sizes` and `python -m metrics compare`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_coco_panoptic import write_dataset
from test_pq import random_case

from metrics import analysis, pq
from metrics.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_rows_round_trip_through_strings_and_sum_like_pq_counts():
    rng = np.random.default_rng(11)
    per_image = [analysis.analyze_image(*random_case(rng, crowd=True, void=True)).counts for _ in range(12)]
    for counts in per_image:
        rows = counts.rows()
        assert all(list(row) == list(analysis.ANALYSIS_COLUMNS) for row in rows.values())
        as_text = {str(k): {c: repr(v) for c, v in row.items()} for k, row in rows.items()}  # as read from a CSV
        assert analysis.AnalysisCounts.from_rows(as_text) == counts
    total = analysis.sum_analyses(per_image)
    summed_rows = {}
    for counts in per_image:
        for k, row in counts.rows().items():
            summed_rows[k] = {c: summed_rows.get(k, {}).get(c, 0) + v for c, v in row.items()}
    assert total.rows().keys() == summed_rows.keys()
    for k, row in total.rows().items():
        assert row == pytest.approx(summed_rows[k], abs=1e-12)


def test_from_rows_names_the_bad_value():
    row = dict.fromkeys(analysis.ANALYSIS_COLUMNS, 0)
    with pytest.raises(ValueError, match="category 4: column 'fn_split' is not a number: 'x'"):
        analysis.AnalysisCounts.from_rows({4: dict(row, fn_split="x")})
    with pytest.raises(ValueError, match="category 4: no value for column 'large_iou_sum'"):
        analysis.AnalysisCounts.from_rows({4: {c: v for c, v in row.items() if c != "large_iou_sum"}})
    with pytest.raises(ValueError, match="non-negative"):
        analysis.AnalysisCounts.from_rows({4: dict(row, boundary_tp=-1)})


def test_record_is_json_ready_and_a_given_match_changes_nothing():
    rng = np.random.default_rng(12)
    case = random_case(rng, crowd=True, void=True)
    result = analysis.analyze_image(*case)
    record = json.loads(json.dumps(result.record()))
    assert record["segments"] == result.segments()
    assert {int(k) for k in record["classes"]} == set(result.counts.rows())
    again = analysis.analyze_image(*case, match=pq.match_image(*case))
    assert again.counts == result.counts and again.segments() == result.segments()


def run(*args):
    return subprocess.run([sys.executable, "-m", "metrics", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_adds_errors_boundary_and_sizes(tmp_path, capsys):
    gt_json, pred_json = write_dataset(tmp_path)
    plain = run(gt_json, pred_json, "--per-image")
    done = run(gt_json, pred_json, "--per-image", "--errors", "--boundary", "--sizes")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {k: v for k, v in result.items() if k not in ("errors", "boundary", "sizes")} == json.loads(plain.stdout)
    # Image 2: a bed with IoU 0.75 plus a person lying on the bed's last row: a background false positive.
    assert result["errors"]["All"]["fp"]["background"] == 1 and result["errors"]["per_class"]["12"]["fp"] == {
        "class": 0, "merged": 0, "split": 0, "localization": 0, "background": 1}
    assert result["errors"]["All"]["delta_pq"]["background"] == pytest.approx((1 + 0.875) / 2 - 0.625)
    assert result["errors"]["per_image"]["3"] is None and result["errors"]["per_image"]["1"]["fn"]["missed"] == 0
    # Boundary on 6x8 images (d = 1): image 1 is perfect; in image 2 the 4x4 bed (12 boundary pixels) and its
    # 3x4 prediction (10) share 8: boundary IoU 8 / 14 < mask IoU 0.75, still over 0.5.
    assert result["boundary"]["per_class"]["7"]["iou_sum"] == pytest.approx(1.0 + 8 / 14)
    assert result["boundary"]["per_class"]["7"]["tp"] == 2
    assert result["boundary"]["per_image"]["3"] is None
    assert result["sizes"]["small"]["All"] == result["All"] and result["sizes"]["large"]["All"]["n"] == 0
    # In-process entry point, without per-image entries.
    assert main([str(gt_json), str(pred_json), "--sizes"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"All", "Things", "Stuff", "per_class", "sizes"}


def test_compare_prints_delta_with_intervals(tmp_path):
    gt_json, pred_json = write_dataset(tmp_path)
    done = run("compare", gt_json, pred_json, gt_json, "--b-folder", tmp_path / "gt", "--resamples", 200)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["images"] == 3 and result["resamples"] == 200 and result["seed"] == 0
    assert result["All"]["pq_a"] == 0.625 and result["All"]["pq_b"] == 1.0 and result["All"]["delta"] == -0.375
    assert result["All"]["low"] <= -0.375 <= result["All"]["high"] <= 0 and not result["All"]["significant"]
    assert result["per_class"]["12"] == {"pq_a": 0.0, "pq_b": None, "delta": None, "low": None, "high": None,
                                         "significant": False}
    same = json.loads(run("compare", gt_json, pred_json, pred_json).stdout)
    assert (same["All"]["low"], same["All"]["high"], same["All"]["delta"]) == (0.0, 0.0, 0.0)


def test_cli_errors_are_one_line_naming_the_file(tmp_path, capsys):
    gt_json, pred_json = write_dataset(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    for argv in ([gt_json, broken, "--errors"], ["compare", gt_json, pred_json, broken]):
        assert main([str(a) for a in argv]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1
        assert captured.err.startswith(f"error: {broken}: not a readable JSON file")
    (tmp_path / "pred" / "ADE_val_00000002.png").unlink()
    assert main(["compare", str(gt_json), str(gt_json), str(pred_json), "--a-folder", str(tmp_path / "gt")]) == 1
    assert "ADE_val_00000002.png: file not found" in capsys.readouterr().err
    done = run("compare", gt_json, pred_json)
    assert done.returncode == 2 and "the following arguments are required: b_json" in done.stderr
    assert run("compare", "--help").stdout.startswith("usage: python -m metrics compare")
