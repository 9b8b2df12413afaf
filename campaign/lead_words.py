"""The words people write in lead files and web forms: for yes, no, none, small numbers and
the kind of anxiety they report (pure data; campaign.lead_fields reads them)."""

from __future__ import annotations

import re

from campaign.models import AnxietyType

TRUE_WORDS = {
    "yes",
    "y",
    "true",
    "t",
    "1",
    "on",
    "x",
    "checked",
    "agree",
    "agreed",
    "i agree",
    "opt in",
    "opted in",
    "subscribed",
}
FALSE_WORDS = {
    "no",
    "n",
    "false",
    "f",
    "0",
    "off",
    "",
    "unchecked",
    "disagree",
    "opt out",
    "opted out",
    "unsubscribed",
}

# Order matters: treatment-resistant phrasing often also says "anxiety".
ANXIETY_PATTERNS: list[tuple[AnxietyType, re.Pattern]] = [
    (
        AnxietyType.treatment_resistant,
        re.compile(
            r"treatment[\s-]*resistant|\btra\b|nothing (has )?(worked|helped)|"
            r"tried (everything|multiple|several|many)|(didn'?t|did not|don'?t|haven'?t) "
            r"(work|help)|resistant",
            re.I,
        ),
    ),
    (
        AnxietyType.social,
        re.compile(r"social|\bsad\b|phobia|being judged|public speaking|shy|performance", re.I),
    ),
    (
        AnxietyType.gad,
        re.compile(
            r"generali[sz]ed|\bgad\b|constant(ly)? worr|worry|worries|worrying|everyday|all the time", re.I
        ),
    ),
]

NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}
NONE_WORDS = {"none", "no", "nothing", "n/a", "na"}
