"""build_payload / check_limits: pure functions, asserted as dicts."""

from __future__ import annotations

import copy
import json

import pytest
from sendgrid_fixtures import make_email

from campaign.delivery.payload import (
    build_payload,
    check_limits,
    clean_display_name,
)
from campaign.models import AnxietyType


def test_build_payload_produces_every_field():
    email = make_email(7, to_name="Jane Doe")
    assert build_payload(email) == {
        "from": {"email": "care@freshstartketamine.example", "name": "Fresh Start Ketamine"},
        "reply_to": {"email": "care@freshstartketamine.example"},
        "personalizations": [{"to": [{"email": "lead7@example.com", "name": "Jane Doe"}]}],
        "subject": "What an intake visit looks like",
        "content": [
            {"type": "text/plain", "value": "Hello Jane,\n\nSome patients ..."},
            {
                "type": "text/html",
                "value": "<html><body><p>Hello Jane,</p><p>Some patients ...</p></body></html>",
            },
        ],
        "headers": {
            "List-Unsubscribe": "<https://freshstartketamine.example/u/tok7>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "custom_args": {"send_id": "snd_0007_q8Zr"},
        "categories": ["education"],
        "tracking_settings": {
            "open_tracking": {"enable": False},
            "click_tracking": {"enable": False, "enable_text": False},
            "subscription_tracking": {"enable": False},
        },
    }


def test_build_payload_options_asm_tracking_and_sandbox():
    payload = build_payload(
        make_email(), sandbox=True, asm_group_id=4242, track_opens=True, track_clicks=True
    )
    assert payload["asm"] == {"group_id": 4242}
    assert payload["tracking_settings"]["open_tracking"] == {"enable": True}
    assert payload["tracking_settings"]["click_tracking"]["enable"] is True
    assert payload["mail_settings"] == {"sandbox_mode": {"enable": True}}
    # A JSON boolean on the wire, not the string "true" (SendGrid answers that with a 400).
    assert '"sandbox_mode": {"enable": true}' in json.dumps(payload)


def test_build_payload_without_options_has_no_asm_and_no_sandbox():
    payload = build_payload(make_email())
    assert "asm" not in payload
    assert "mail_settings" not in payload


def test_build_payload_omits_reply_to_when_none():
    assert "reply_to" not in build_payload(make_email(reply_to=None))


def test_test_emails_get_the_test_category():
    assert build_payload(make_email(is_test=True))["categories"] == ["education", "test"]
    assert build_payload(make_email(is_test=True, category="test"))["categories"] == ["test"]


def test_custom_args_values_are_strings():
    payload = build_payload(make_email(send_id="12345"))
    assert payload["custom_args"] == {"send_id": "12345"}
    assert all(isinstance(v, str) for v in payload["custom_args"].values())


@pytest.mark.parametrize("anxiety", list(AnxietyType))
def test_health_information_never_reaches_sendgrid_metadata(anxiety):
    # The body may talk about the condition; the metadata SendGrid stores as non-PII must not.
    email = make_email(
        to_name="Jane Doe",
        html=f"<p>About {anxiety.value} anxiety</p>",
        text=f"About {anxiety.value} anxiety",
    )
    payload = build_payload(email, asm_group_id=1)
    assert set(payload["custom_args"]) == {"send_id"}
    metadata = json.dumps([payload["custom_args"], payload["categories"]]).lower()
    for word in [anxiety.value, "anxiety", "gad", "social", "treatment", "audience", "jane", "lead0@"]:
        assert word not in metadata


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Doe, Jane", "Doe Jane"),
        ("Jane; Doe", "Jane Doe"),
        ('Jane "JJ" Doe', "Jane JJ Doe"),
        ("O'Brien", "O Brien"),
        ("Jane\r\nBcc: evil@example.com", "Jane Bcc: evil@example.com"),
        ("<Jane>", "Jane"),
        ("  José   Núñez ", "José Núñez"),
    ],
)
def test_recipient_names_are_cleaned(raw, clean):
    assert clean_display_name(raw) == clean
    payload = build_payload(make_email(to_name=raw))
    assert payload["personalizations"][0]["to"][0] == {"email": "lead0@example.com", "name": clean}


def test_empty_or_unusable_name_is_left_out():
    assert build_payload(make_email(to_name=""))["personalizations"][0]["to"] == [
        {"email": "lead0@example.com"}
    ]
    assert build_payload(make_email(to_name=";,"))["personalizations"][0]["to"] == [
        {"email": "lead0@example.com"}
    ]


def test_content_is_text_then_html_and_empty_parts_are_dropped():
    assert [c["type"] for c in build_payload(make_email())["content"]] == ["text/plain", "text/html"]
    assert [c["type"] for c in build_payload(make_email(text=""))["content"]] == ["text/html"]


# -- check_limits ---------------------------------------------------------------------------


def _valid() -> dict:
    return build_payload(make_email())


def test_a_built_payload_passes_the_limits():
    assert check_limits(_valid()) == []
    assert check_limits(build_payload(make_email(), sandbox=True, asm_group_id=3)) == []


def _broken(mutate) -> list[str]:
    payload = copy.deepcopy(_valid())
    mutate(payload)
    return check_limits(payload)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.pop("subject"), "subject"),
        (lambda p: p.update(subject=""), "subject"),
        (lambda p: p.update(subject="   "), "subject"),
        (lambda p: p.pop("from"), "from.email"),
        (lambda p: p.update(personalizations=[]), "personalizations"),
        (lambda p: p["personalizations"][0].pop("to"), "personalizations[0].to"),
        (lambda p: p.update(content=[]), "content"),
        (lambda p: p["content"][0].update(value=""), "content[0].value"),
        (lambda p: p.update(content=list(reversed(p["content"]))), "text/plain first"),
        (lambda p: p["custom_args"].update(n=5), "custom_args.n must be a string"),
        (lambda p: p["custom_args"].update(big="x" * 10_000), "10,000"),
        (lambda p: p.update(categories=[f"c{i}" for i in range(11)]), "at most 10"),
        (lambda p: p.update(categories=["x" * 256]), "longer than 255"),
        (
            lambda p: p.update(
                personalizations=[{"to": [{"email": f"a{i}@example.com"}]} for i in range(1001)]
            ),
            "personalizations",
        ),
        (
            lambda p: p["personalizations"][0].update(
                bcc=[{"email": f"b{i}@example.com"} for i in range(1000)]
            ),
            "1001 recipients",
        ),
        (lambda p: p["personalizations"][0].update(cc=[{"email": "LEAD0@example.com"}]), "more than once"),
        (lambda p: p.update(mail_settings={"sandbox_mode": {"enable": "true"}}), "JSON boolean"),
        (lambda p: p.update(asm={"group_id": "7"}), "asm.group_id"),
        (lambda p: p["headers"].update({"X-Count": 3}), "string value"),
        (lambda p: p["headers"].update({"Subject": "spoof"}), "reserved"),
        (lambda p: p.update(send_at="tomorrow"), "send_at"),
    ],
)
def test_check_limits_reports_each_problem(mutate, expected):
    problems = _broken(mutate)
    assert problems, "expected a problem"
    assert any(expected in p for p in problems), problems


def test_subject_in_every_personalization_is_enough():
    def mutate(p):
        p.pop("subject")
        p["personalizations"][0]["subject"] = "Per-recipient subject"

    assert _broken(mutate) == []


def test_send_at_more_than_72_hours_ahead_is_reported():
    payload = _valid()
    payload["send_at"] = 1_000_000 + 73 * 3600
    assert any("72 hours" in p for p in check_limits(payload, now=1_000_000))
    payload["send_at"] = 1_000_000 + 71 * 3600
    assert check_limits(payload, now=1_000_000) == []


def test_message_over_30_mb_is_reported():
    payload = build_payload(make_email(html="x" * (30 * 1024 * 1024)))
    assert any("30 MB" in p for p in check_limits(payload))
