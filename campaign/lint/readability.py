"""Reading grade: Flesch-Kincaid grade as ``textstat.flesch_kincaid_grade`` measures it, over the
text part WITHOUT the shared footer (everything from the last line "----" on is cut).

Links and the call-to-action line stay in: that is the number a reviewer gets by running
textstat on the text part, and a bare URL counts as one long word, so keep links few.
"""

from __future__ import annotations

FOOTER_RULE = "----"
MAX_GRADE = 8.0


def body_text(text: str) -> str:
    """The text part without the shared footer: everything from the last '----' line on."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == FOOTER_RULE:
            return "\n".join(lines[:i]).strip() + "\n"
    return text


def reading_grade(text: str) -> float:
    """Flesch-Kincaid grade of the text part's body (footer cut), as textstat measures it."""
    import textstat

    try:
        return float(textstat.flesch_kincaid_grade(body_text(text)))
    except LookupError as exc:  # textstat 0.7.9 reads NLTK's cmudict corpus, absent offline
        raise RuntimeError(
            "textstat cannot count syllables: its CMU dictionary is missing. textstat 0.7.9 loads "
            "it from NLTK's data (not installed here); 0.7.5-0.7.8 bundle it through the 'cmudict' "
            "package. Pin textstat>=0.7.5,<0.7.9."
        ) from exc
