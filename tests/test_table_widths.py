"""Column widths fitted to a table's room (ui/table_widths.py): what the browser test measures on every page,
here on the arithmetic."""

from __future__ import annotations

import pandas as pd
import polars as pl
import streamlit as st

from ui.table_widths import columns_of, fit_widths, natural_widths, sized_config, text_px


def test_widths_that_fit_are_kept_and_the_widest_are_narrowed_first_when_they_do_not() -> None:
    assert fit_widths({"a": 100, "b": 200}, 400) == {"a": 100, "b": 200}
    fitted = fit_widths({"run": 90, "definition": 400, "cause": 500, "n": 60}, 500)
    assert fitted["run"] == 90 and fitted["n"] == 60  # narrow columns keep what they need
    assert fitted["definition"] == fitted["cause"] == 175  # the two widest share what is left
    assert sum(fitted.values()) <= 500


def test_no_column_is_narrowed_below_a_readable_minimum() -> None:
    fitted = fit_widths({f"c{i}": 300 for i in range(10)}, 200)
    assert set(fitted.values()) == {48}  # too many to fit: the table scrolls rather than show slivers


def test_a_column_is_as_wide_as_its_widest_cell_or_its_header_and_a_link_as_its_shown_text() -> None:
    config = {"Run": st.column_config.LinkColumn("Run", display_text=r"run\?id=(.*)"),
              "Runs page": st.column_config.LinkColumn("Runs page", display_text="open runs")}
    widths = natural_widths({"Run": ["/run?id=RUN-000001"], "Runs page": ["/?definition=kyc-weekly-review&period=q"],
                             "Cause": ["x" * 200], "n": [7]}, config)
    assert widths["Run"] == int(text_px("RUN-000001") + 16)  # the id, not the address
    assert widths["Runs page"] == int(max(text_px("Runs page") * 1.05, text_px("open runs")) + 16)
    assert widths["Cause"] == 480  # long text is capped; the cell cuts it
    assert widths["n"] == 48


def test_every_kind_of_table_the_pages_draw_gives_its_columns() -> None:
    rows = [{"a": 1, "b": "x"}, {"a": 2, "c": None}]
    assert columns_of(rows) == {"a": [1, 2], "b": ["x", None], "c": [None, None]}
    assert columns_of(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})) == {"a": [1, 2], "b": ["x", "y"]}
    assert columns_of(pl.DataFrame({"a": [1, 2]})) == {"a": [1, 2]}


def test_a_chosen_width_and_a_hidden_column_are_left_as_they_are() -> None:
    frame = pd.DataFrame({"Item": ["x" * 300], "Hidden": ["y"], "Note": ["z" * 300]})
    config = sized_config(frame, {"Item": st.column_config.TextColumn("Item", width=100), "Hidden": None}, room=400)
    assert config["Item"]["width"] == 100 and config["Hidden"] is None
    assert config["Note"]["width"] == 300  # the room less the chosen width
    assert config["Note"]["label"] == "Note"


def test_a_whole_column_keeps_its_width_and_the_others_make_room() -> None:
    frame = pd.DataFrame({"Status": ["⚠ completed-with-failures"], "Definition": ["regulator-rule-change-intake v1"],
                          "Outcomes": ["1 awaiting approval"]})
    natural = natural_widths(columns_of(frame), {})
    config = sized_config(frame, {}, room=300, whole=("Status",))
    assert config["Status"]["width"] == natural["Status"]
    assert config["Definition"]["width"] + config["Outcomes"]["width"] <= 300 - natural["Status"]
