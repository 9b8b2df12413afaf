"""Synthetic leads for the demo, tests and benchmarks (deterministic for a given seed).

Shaped like a real web-form export: human headers, free-text answers, a few broken rows.
No real people: every address is at example.com / example.org.
"""

from __future__ import annotations

import csv
import io
import random
import unicodedata

HEADERS = [
    "Email Address",
    "First Name",
    "Last Name",
    "What type of anxiety do you experience?",
    "How many treatments have you tried?",
    "May we email you?",
    "State",
    "Time Zone",
    "Lead Source",
]

FIRST = [
    "Ava",
    "Liam",
    "Maya",
    "Noah",
    "Zoe",
    "Eli",
    "Nora",
    "Owen",
    "Ivy",
    "Luis",
    "José",
    "Zoë",
    "Aiko",
    "Priya",
    "Chen",
    "Fatima",
    "Dmitri",
    "Grace",
    "Sam",
    "Jordan",
    "Renée",
    "Kwame",
    "Leah",
    "Omar",
    "",
]
LAST = ["Smith", "Garcia", "Nguyen", "Johnson", "Brown", "O'Neil", "Patel", "Kim", "Martinez", "Lee", "Davis"]
ANXIETY = {
    "gad": ["Generalized Anxiety Disorder (GAD)", "GAD", "constant worry", "I worry all the time"],
    "social": ["Social anxiety", "social phobia", "SAD", "Fear of being judged"],
    "treatment_resistant": [
        "Treatment-resistant anxiety",
        "nothing has worked",
        "Tried everything, nothing helped",
    ],
    "unspecified": ["", "Not sure", "Other", "prefer not to say"],
}
PRIOR = ["", "", "0", "1", "one", "none", "", "two", "3", "SSRIs; therapy", "Zoloft, Lexapro, CBT"]
CONSENT = ["Yes", "yes", "Y", "TRUE", "I agree", "No", "no", ""]
PLACES = [
    ("NC", ""),
    ("NC", "America/New_York"),
    ("North Carolina", ""),
    ("CA", ""),
    ("TX", ""),
    ("AZ", ""),
    ("", "America/Denver"),
    ("", ""),
    ("HI", ""),
    ("NY", "America/New_York"),
]
SOURCES = ["website", "facebook-form", "referral", "google"]


def sample_rows(count: int, seed: int = 7, bad_rows: int = 6) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    kinds = list(ANXIETY)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        state, tz = rng.choice(PLACES)
        ascii_first = unicodedata.normalize("NFKD", first or "lead").encode("ascii", "ignore").decode()
        local = f"{ascii_first.lower()}.{last.lower().replace(chr(39), '')}{i}"
        # Some addresses in odd letter case: the import treats case as the same lead.
        email = f"{local}@example.com" if i % 9 else f"  {local.upper()}@Example.COM "
        rows.append(
            [
                email,
                first,
                last,
                rng.choice(ANXIETY[kind]),
                rng.choice(PRIOR),
                rng.choice(CONSENT),
                state,
                tz,
                rng.choice(SOURCES),
            ]
        )
    broken = [
        ["not-an-email", "Bad", "Row", "GAD", "", "Yes", "NC", "", "website"],
        ["", "No", "Email", "social phobia", "", "Yes", "NC", "", "website"],
        ["someone@", "Half", "Address", "", "", "Yes", "", "", "website"],
        ["two@@example.com", "Double", "At", "GAD", "", "Yes", "", "", "website"],
        ["space in@example.com", "Space", "Inside", "", "", "yes", "", "", "website"],
        ["no-domain@localhost", "Local", "Host", "", "", "yes", "", "", "website"],
    ]
    for j, row in enumerate(broken[:bad_rows]):
        rows.insert((j + 1) * max(1, len(rows) // (bad_rows + 1)), row)
    return rows


def sample_csv(count: int, seed: int = 7, bad_rows: int = 6) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # form exports use Windows line ends
    writer.writerow(HEADERS)
    writer.writerows(sample_rows(count, seed, bad_rows))
    return out.getvalue()


if __name__ == "__main__":  # python -m campaign.sample > audiences/sample_leads.csv
    import sys

    sys.stdout.write(sample_csv(int(sys.argv[1]) if len(sys.argv) > 1 else 240))
