"""CSV import: messy headers, encodings, mapping of free text, rejects that sink nothing else."""

from __future__ import annotations

import pytest

from campaign.lead_fields import parse_anxiety_type, parse_prior_treatments, resolve_timezone
from campaign.leads import ImportFileError, parse_column_overrides, parse_lead_file
from campaign.models import AnxietyType


def parse(text: str, **kw):
    return parse_lead_file(text.encode("utf-8"), filename="leads.csv", **kw)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Generalized Anxiety Disorder (GAD)", AnxietyType.gad),
        ("GAD", AnxietyType.gad),
        ("constant worry", AnxietyType.gad),
        ("Social anxiety", AnxietyType.social),
        ("social phobia", AnxietyType.social),
        ("SAD", AnxietyType.social),
        ("treatment-resistant", AnxietyType.treatment_resistant),
        ("Treatment Resistant Anxiety", AnxietyType.treatment_resistant),
        ("nothing has worked", AnxietyType.treatment_resistant),
        ("treatment_resistant", AnxietyType.treatment_resistant),
        ("", AnxietyType.unspecified),
        ("something else entirely", AnxietyType.unspecified),
    ],
)
def test_anxiety_free_text_maps_to_vocabulary(text, expected):
    assert parse_anxiety_type(text) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", None),
        ("3", 3),
        ("two", 2),
        ("none", 0),
        ("SSRIs; therapy", 2),
        ("Zoloft, Lexapro, CBT", 3),
        ("1 SSRI", 1),
    ],
)
def test_prior_treatments_counts_numbers_words_and_lists(text, expected):
    assert parse_prior_treatments(text) == expected


def test_headers_match_aliases_case_space_and_punctuation_insensitively():
    parsed = parse(
        "E-MAIL ADDRESS ,first name,What type of anxiety do you experience?,May we email you?\n"
        "ann@example.com,Ann,GAD,Yes\n"
    )
    ((_, lead),) = parsed.leads
    assert (lead.email, lead.first_name, lead.anxiety_type, lead.consent) == (
        "ann@example.com",
        "Ann",
        AnxietyType.gad,
        True,
    )


def test_column_override_maps_unknown_header():
    parsed = parse(
        "Contact,Nom\nann@example.com,Ann\n",
        overrides=parse_column_overrides(["Contact=email", "Nom=first_name"]),
    )
    assert parsed.leads[0][1].first_name == "Ann"


def test_column_override_rejects_unknown_field():
    with pytest.raises(ValueError, match="unknown field 'mail'"):
        parse_column_overrides(["Contact=mail"])


def test_bom_windows_line_ends_and_quoted_newlines():
    data = (
        "\ufeffEmail,First Name,Source\r\n"
        'ann@example.com,"Ann, Jr.","web\r\nform"\r\n'
        "bob@example.com,Bob,x\r\n"
    )
    parsed = parse_lead_file(data.encode("utf-8"), filename="leads.csv")
    assert [l.email for _, l in parsed.leads] == ["ann@example.com", "bob@example.com"]
    assert parsed.leads[0][1].first_name == "Ann, Jr."
    assert parsed.leads[0][1].source == "web form"  # control characters folded


def test_latin1_fallback_warns_and_keeps_accents():
    parsed = parse_lead_file(
        "Email,First Name\nrene@example.com,Ren\xe9\n".encode("latin-1"), filename="old.csv"
    )
    assert parsed.leads[0][1].first_name == "René"
    assert "Latin-1" in parsed.warnings[0] and "old.csv" in parsed.warnings[0]


def test_bad_rows_are_rejected_with_reasons_and_the_rest_imports():
    parsed = parse("Email,First Name\nnot-an-email,X\n,Y\nok@example.com,Z\n")
    assert [l.email for _, l in parsed.leads] == ["ok@example.com"]
    assert [(r.row_number, r.cells[1]) for r in parsed.rejected] == [(2, "X"), (3, "Y")]
    assert "not valid" in parsed.rejected[0].reason and "empty" in parsed.rejected[1].reason


def test_same_address_in_any_case_is_one_lead_later_row_wins():
    parsed = parse("Email,First Name\nAnn@Example.com,Old\nann@example.COM,New\n")
    assert [(l.email, l.first_name) for _, l in parsed.leads] == [("ann@example.com", "New")]


def test_missing_consent_means_no():
    parsed = parse("Email,Consent\na@example.com,\nb@example.com,maybe\nc@example.com,Y\n")
    assert [l.consent for _, l in parsed.leads] == [False, False, True]


def test_file_without_email_column_is_one_clear_error():
    with pytest.raises(ImportFileError, match="no email column.*--column"):
        parse("Name,Phone\nAnn,555\n")


def test_empty_file_is_an_error():
    with pytest.raises(ImportFileError, match="empty"):
        parse_lead_file(b"", filename="x.csv")


def test_names_keep_markup_as_given_but_lose_control_chars_and_length():
    parsed = parse('Email,First Name\na@example.com,"<script>x</script>\x07' + "n" * 300 + '"\n')
    name = parsed.leads[0][1].first_name
    assert name.startswith("<script>x</script>") and "\x07" not in name and len(name) == 200


@pytest.mark.parametrize(
    "tz, state, expected",
    [
        ("America/Chicago", "NC", ("America/Chicago", "NC")),
        ("", "CA", ("America/Los_Angeles", "CA")),
        ("", "texas", ("America/Chicago", "TX")),
        ("Mars/Base", "", ("America/New_York", "")),
    ],
)
def test_timezone_from_iana_else_state_else_clinic(tz, state, expected):
    assert resolve_timezone(tz, state, "America/New_York") == expected


def test_non_ascii_local_part_is_rejected_because_sendgrid_cannot_deliver_it():
    parsed = parse("Email\njosé@example.com\n")
    assert parsed.rejected and not parsed.leads
