"""Reading grades, as textstat measures them, over the text part WITHOUT the shared footer
(everything from the last line "----" on is cut):

- Flesch-Kincaid grade (``textstat.flesch_kincaid_grade``): sentence length and syllables;
- SMOG index (``textstat.smog_index``): words of three or more syllables per sentence, the
  measure health-literacy guides prefer; it rises with technical words (glutamate,
  neuroplasticity) that FK lets through in short sentences. Under three sentences textstat
  returns its floor (3.1).

Links and the call-to-action line stay in: that is the number a reviewer gets by running
textstat on the text part, and a bare URL counts as one long word, so keep links few.
"""

from __future__ import annotations

from collections.abc import Callable

FOOTER_RULE = "----"
MAX_GRADE = 8.0
MAX_SMOG = 8.0


def body_text(text: str) -> str:
    """The text part without the shared footer: everything from the last '----' line on."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == FOOTER_RULE:
            return "\n".join(lines[:i]).strip() + "\n"
    return text


def _measure(formula: Callable[[str], float], text: str) -> float:
    try:
        return float(formula(body_text(text)))
    except LookupError as exc:  # textstat 0.7.9 reads NLTK's cmudict corpus, absent offline
        raise RuntimeError(
            "textstat cannot count syllables: its CMU dictionary is missing. textstat 0.7.9 loads "
            "it from NLTK's data (not installed here); 0.7.5-0.7.8 bundle it through the 'cmudict' "
            "package. Pin textstat>=0.7.5,<0.7.9."
        ) from exc


def reading_grade(text: str) -> float:
    """Flesch-Kincaid grade of the text part's body (footer cut), as textstat measures it."""
    import textstat

    return _measure(textstat.flesch_kincaid_grade, text)


def smog_grade(text: str) -> float:
    """SMOG index of the text part's body (footer cut), as textstat measures it."""
    import textstat

    return _measure(textstat.smog_index, text)
