"""Tests of circus_tasks/plugins/results.py: the results.json schema and loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from circus_tasks.errors import CircusError, ResultsError
from circus_tasks.plugins.results import RESULTS_SCHEMA, load_results, validate_results


def _write(out_dir: Path, document: Any) -> Path:
    path = out_dir / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _valid() -> dict[str, Any]:
    return {
        "results": {
            "lesionCandidates": [
                {
                    "rank": 1,
                    "volumeId": 0,
                    "location": [35, 40, 24],
                    "volumeSize": 2144.7,
                    "confidence": 0.93,
                },
                {"volumeId": 1, "location": [1.5, 2.5, 3.5], "confidence": 0.2},
            ],
            "score": 42.5,
        },
        "metadata": {
            "displayOptions": [
                {
                    "volumeId": 0,
                    "crop": {"origin": [0, 0, 0], "size": [96, 96, 48]},
                    "window": {"level": 40, "width": 400},
                },
                {"volumeId": 1},
            ]
        },
    }


VALID_DOCUMENTS = [
    pytest.param(_valid(), id="full"),
    pytest.param({"results": {}}, id="empty-results"),
    pytest.param({"results": {"lesionCandidates": []}}, id="no-candidates"),
    pytest.param({"results": {"volume": 12.5, "label": "x"}}, id="numeric-results"),
    pytest.param({"results": {}, "metadata": {}}, id="empty-metadata"),
    pytest.param({"results": {}, "extra": [1, 2]}, id="extra-top-level-key"),
]


def test_schema_is_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(RESULTS_SCHEMA)
    assert RESULTS_SCHEMA["$schema"].endswith("2020-12/schema")


@pytest.mark.parametrize("document", VALID_DOCUMENTS)
def test_valid_documents_are_loaded(tmp_path: Path, document: dict[str, Any]) -> None:
    _write(tmp_path, document)
    assert load_results(tmp_path) == document


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="results.json is missing") as info:
        load_results(tmp_path)
    assert str(tmp_path / "results.json") in str(info.value)
    assert isinstance(info.value, CircusError)
    assert isinstance(info.value, ValueError)


def test_broken_json_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{\n  "results": {,}\n}\n', encoding="utf-8")
    with pytest.raises(ResultsError, match="not valid JSON") as info:
        load_results(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "results.json") in message
    assert "line 2, column 15" in message


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_bytes(b'{"results": {"name": "\xff"}}')
    with pytest.raises(ResultsError, match="not UTF-8"):
        load_results(tmp_path)


def test_nan_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"results": {"score": NaN}}', encoding="utf-8")
    with pytest.raises(ResultsError, match="NaN"):
        load_results(tmp_path)


def test_top_level_not_an_object(tmp_path: Path) -> None:
    _write(tmp_path, [1, 2])
    with pytest.raises(ResultsError, match=r"\$: \[1, 2\] is not of type 'object'"):
        load_results(tmp_path)


def _broken(mutate: Any) -> dict[str, Any]:
    document = _valid()
    mutate(document)
    return document


INVALID_DOCUMENTS = [
    pytest.param(
        {"metadata": {}},
        r"\$: 'results' is a required property",
        id="missing-results",
    ),
    pytest.param(
        {"results": []},
        r"\$\.results: \[\] is not of type 'object'",
        id="results-not-object",
    ),
    pytest.param(
        _broken(lambda d: d["results"]["lesionCandidates"][0].update(location=[1, 2])),
        r"\$\.results\.lesionCandidates\[0\]\.location: \[1, 2\] is too short",
        id="location-of-two-numbers",
    ),
    pytest.param(
        _broken(lambda d: d["results"]["lesionCandidates"][1].update(confidence="high")),
        r"\$\.results\.lesionCandidates\[1\]\.confidence: 'high' is not of type 'number'",
        id="confidence-a-string",
    ),
    pytest.param(
        _broken(lambda d: d["results"]["lesionCandidates"][0].update(volumeId=-1)),
        r"\$\.results\.lesionCandidates\[0\]\.volumeId: -1 is less than the minimum of 0",
        id="negative-volume-id",
    ),
    pytest.param(
        _broken(lambda d: d["results"]["lesionCandidates"][0].pop("location")),
        r"\$\.results\.lesionCandidates\[0\]: 'location' is a required property",
        id="location-missing",
    ),
    pytest.param(
        _broken(lambda d: d["results"]["lesionCandidates"][0].update(rank=1.5)),
        r"\$\.results\.lesionCandidates\[0\]\.rank: 1\.5 is not of type 'integer'",
        id="rank-not-integer",
    ),
    pytest.param(
        _broken(lambda d: d["metadata"]["displayOptions"][0]["window"].update(width=0)),
        r"\$\.metadata\.displayOptions\[0\]\.window\.width: 0 is less than or equal to "
        r"the minimum of 0",
        id="window-width-0",
    ),
    pytest.param(
        _broken(lambda d: d["metadata"]["displayOptions"][0]["crop"].update(size=[1, 2, 3, 4])),
        r"\$\.metadata\.displayOptions\[0\]\.crop\.size: \[1, 2, 3, 4\] is too long",
        id="crop-size-of-four",
    ),
    pytest.param(
        _broken(lambda d: d["metadata"]["displayOptions"][1].pop("volumeId")),
        r"\$\.metadata\.displayOptions\[1\]: 'volumeId' is a required property",
        id="display-option-without-volume-id",
    ),
]


@pytest.mark.parametrize(("document", "expected"), INVALID_DOCUMENTS)
def test_invalid_documents_are_refused_with_their_path(
    tmp_path: Path, document: dict[str, Any], expected: str
) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(ResultsError, match=expected) as info:
        load_results(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "does not match the CIRCUS results schema" in message
    assert "Fix the plug-in" in message


def test_every_violation_is_listed(tmp_path: Path) -> None:
    document = _valid()
    document["results"]["lesionCandidates"][0]["location"] = [1, 2]
    document["results"]["lesionCandidates"][1]["confidence"] = "high"
    document["metadata"]["displayOptions"][0]["window"]["width"] = 0
    _write(tmp_path, document)
    with pytest.raises(ResultsError, match=r"\(3 problems\)") as info:
        load_results(tmp_path)
    message = str(info.value)
    for path in (
        "$.results.lesionCandidates[0].location",
        "$.results.lesionCandidates[1].confidence",
        "$.metadata.displayOptions[0].window.width",
    ):
        assert path in message


def test_validate_results_names_the_source() -> None:
    with pytest.raises(ResultsError, match=r"^job-7/results\.json does not match"):
        validate_results({}, source="job-7/results.json")
    validate_results(_valid())
