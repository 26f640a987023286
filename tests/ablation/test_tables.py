"""The shared table renderer, and the ablation results' summary computed once."""

from noisylayers.ablation.tables import markdown_table
from noisylayers.ablation.tables import text_table
from tests.ablation.test_results import sensitivity_result
from tests.ablation.test_results import training_result


def test_markdown_table():
    assert markdown_table(["a", "bb"], [["1", "2"], ["x", ""]]) == [
        "| a | bb |", "|---|---|", "| 1 | 2 |", "| x |  |",
    ]
    assert markdown_table(["contender", "mlp"]) == ["| contender | mlp |", "|---|---|"]


def test_text_table_aligns_columns():
    assert text_table(["a", "bb"], [["long", "2"], ["x", ""]]) == [
        "a     bb", "----  --", "long  2", "x",
    ]


def test_summary_rows_are_computed_once(monkeypatch):
    for result in (training_result(), sensitivity_result()):
        calls = []
        compute = result._rows
        monkeypatch.setattr(result, "_rows", lambda: calls.append(1) or compute())
        rows = result.rows
        result.to_string(), result.to_markdown(), result.to_dict(), result.plot()
        assert result.rows is rows and calls == [1]
