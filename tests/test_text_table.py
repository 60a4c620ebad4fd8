"""cluster.text_table: headers take the column's alignment and width; a None cell is blank at that width."""
from cluster.text_table import fixed_width


def test_fixed_width_aligns_headers_and_cells_and_blanks_none():
    lines = fixed_width([("name", "<6"), ("acc", ">7.3f"), ("x", ">4")], [["ab", 0.5, "1x"], ["cdefgh", 1.0, None]])
    assert lines == ["name      acc   x",
                     "ab      0.500  1x",
                     "cdefgh  1.000    "]
