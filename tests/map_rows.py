"""A small hand-written line table and the ReasonMap-style rows built on it (shared by reward tests)."""

LINES = {
    "Line 1": ["Alpha Station (Transfer Station)", "Bravo Station",
               "Charlie Station (Transfer Station)", "Delta Station"],
    "Line 2": ["Echo Station", "Charlie Station (Transfer Station)",
               "Foxtrot Station (Transfer Station)", "Golf Station"],
    "Line 3": ["Foxtrot Station (Transfer Station)", "Hotel Station", "India Station"],
    "Line 4": ["Alpha Station (Transfer Station)", "Bravo Station",
               "Juliet Station (Branch-starting Station)"],
}


def route(*sections):
    """Model answer in the expected planning format."""
    return "\n--\n".join(f"Route Name: {r}\nDeparture Stop: {d}\nArrival Stop: {a}"
                         for r, d, a in sections)


def plan_row(s1, s2, transfers, city="middle", table=LINES):
    return {"type": "planning", "answer": None, "difficulty_city": city,
            "question_transfer_count": transfers, "station_1": s1, "station_2": s2, "json": table}


def choice_row(qtype, answer, city="easy", **extra):
    return {"type": qtype, "answer": answer, "difficulty_city": city,
            "question_transfer_count": None, **extra}
