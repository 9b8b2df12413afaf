"""Rendering: every shipped audience × step renders under StrictUndefined; escaping is right."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC

import pytest

from campaign.audiences import load_audiences
from campaign.delivery.outbox import to_mime
from campaign.models import OutboundEmail
from campaign.render import Renderer, TemplateError
from campaign.settings import PROJECT_ROOT, get_settings

SETTINGS = get_settings(content_dir=PROJECT_ROOT)
AUDIENCES = load_audiences(PROJECT_ROOT / "audiences")
STEPS = [(a.name, s) for a in AUDIENCES for s in a.steps]
UNSUB = "https://clinic.example.org/unsubscribe/tok"


@pytest.fixture(scope="module")
def renderer():
    return Renderer(SETTINGS.templates_dir, SETTINGS.clinic)


@pytest.mark.parametrize("audience, step", STEPS, ids=[f"{a}/{s.key}" for a, s in STEPS])
@pytest.mark.parametrize("first_name", ["Sam", ""])
def test_every_shipped_step_renders_with_footer(renderer, audience, step, first_name):
    out = renderer.render(step.template, first_name=first_name, unsubscribe_url=UNSUB)
    clinic = SETTINGS.clinic
    for part in (out.html, out.text):
        assert clinic.name in part and "988" in part and UNSUB in part
    assert clinic.postal_address in out.text
    assert out.subject and out.preheader and len(out.subject) <= 78
    assert out.preheader in out.html  # the hidden preheader


def test_twenty_emails_ship():
    assert len(STEPS) == 20 and {a.name for a in AUDIENCES} == {
        "gad",
        "social",
        "treatment_resistant",
        "general",
    }


def test_lead_markup_is_text_in_html_and_verbatim_in_text(renderer):
    out = renderer.render("gad/welcome", first_name="<script>alert(1)</script>", unsubscribe_url=UNSUB)
    assert "<script>alert(1)" not in out.html and "&lt;script&gt;" in out.html
    assert "<script>alert(1)</script>" in out.text


def test_markdown_in_a_name_never_becomes_a_link(renderer):
    out = renderer.render("gad/welcome", first_name="[win](https://evil.example)", unsubscribe_url=UNSUB)
    assert "https://evil.example" not in out.html.replace("[win](https://evil.example)", "")
    assert 'href="https://evil.example"' not in out.html


def test_undefined_variable_names_the_file(tmp_path):
    (tmp_path / "x").mkdir()
    for name in ("layout.mjml", "layout.txt"):
        (tmp_path / name).write_text((SETTINGS.templates_dir / name).read_text())
    (tmp_path / "x" / "bad.md").write_text("---\nsubject: Hi\npreheader: There\n---\nHello {{ diagnosis }}\n")
    with pytest.raises(TemplateError, match=r"x/bad\.md.*diagnosis"):
        Renderer(tmp_path, SETTINGS.clinic).render("x/bad", first_name="", unsubscribe_url=UNSUB)


def partials_folder(tmp_path, body: str, partials: dict[str, str], front="subject: Hi\npreheader: There"):
    (tmp_path / "x").mkdir(parents=True)
    (tmp_path / "partials").mkdir()
    for name in ("layout.mjml", "layout.txt"):
        (tmp_path / name).write_text((SETTINGS.templates_dir / name).read_text())
    for name, text in partials.items():
        (tmp_path / "partials" / name).write_text(text)
    (tmp_path / "x" / "t.md").write_text(f"---\n{front}\n---\n{body}")
    return Renderer(tmp_path, SETTINGS.clinic)


def test_an_email_includes_partials_written_once(tmp_path):
    renderer = partials_folder(
        tmp_path,
        'Hello.\n\n{% include "partials/a.md" %}\n',
        {
            "a.md": 'Shared text for {{ clinic.display_name }}.\n\n{% include "partials/b.md" %}\n',
            "b.md": "Deep.\n",
        },
    )
    out = renderer.render("x/t", first_name="", unsubscribe_url=UNSUB)
    assert "Shared text for Fresh Start." in out.text and "Deep." in out.text and "Deep." in out.html
    assert renderer.source("x/t").includes == ("partials/a.md", "partials/b.md")  # followed through a


def test_a_missing_or_unnamed_partial_is_explained(tmp_path):
    missing = partials_folder(tmp_path / "m", '{% include "partials/nope.md" %}\n', {})
    with pytest.raises(TemplateError, match=r"x/t\.md: includes 'partials/nope\.md'"):
        missing.render("x/t", first_name="", unsubscribe_url=UNSUB)
    dynamic = partials_folder(tmp_path / "d", '{% include "partials/" ~ first_name %}\n', {})
    with pytest.raises(TemplateError, match="literal name"):
        dynamic.render("x/t", first_name="", unsubscribe_url=UNSUB)
    broken = partials_folder(tmp_path / "b", '{% include "partials/a.md" %}\n', {"a.md": "{% if %}\n"})
    with pytest.raises(TemplateError, match=r"partials/a\.md: Jinja syntax error"):
        broken.render("x/t", first_name="", unsubscribe_url=UNSUB)


def test_the_reported_type_and_count_reach_the_body_only(tmp_path):
    from campaign.models import AnxietyType

    body = "{% if anxiety_type == 'social' %}Social. {% endif %}{{ prior_treatments }} tried.\n"
    renderer = partials_folder(tmp_path / "b", body, {})
    out = renderer.render(
        "x/t", first_name="", unsubscribe_url=UNSUB, anxiety_type=AnxietyType.social, prior_treatments=2
    )
    assert out.text.startswith("Social. 2 tried.")
    assert renderer.render("x/t", first_name="", unsubscribe_url=UNSUB).text.startswith("None tried.")
    # Subjects and preheaders travel in the clear: they never see what the lead reported.
    leaky = partials_folder(
        tmp_path / "s", "Body.\n", {}, front="subject: '{{ anxiety_type }}'\npreheader: P"
    )
    with pytest.raises(TemplateError, match="anxiety_type"):
        leaky.render("x/t", first_name="", unsubscribe_url=UNSUB, anxiety_type="gad")


def test_missing_front_matter_is_explained(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "bad.md").write_text("Hello\n")
    with pytest.raises(TemplateError, match="front matter"):
        Renderer(tmp_path, SETTINGS.clinic).render("x/bad", first_name="", unsubscribe_url=UNSUB)


def test_eml_is_multipart_alternative_with_one_click_headers(renderer):
    out = renderer.render("social/welcome", first_name="Zoë", unsubscribe_url=UNSUB)
    outbound = OutboundEmail(
        send_id="abc",
        to_email="zoe@example.com",
        to_name="Zoë Kim",
        from_email="care@clinic.example",
        from_name="Clinic",
        subject=out.subject,
        html=out.html,
        text=out.text,
        unsubscribe_url=UNSUB,
    )
    from datetime import datetime

    parsed = email.message_from_bytes(
        to_mime(outbound, date=datetime.now(UTC)).as_bytes(), policy=email.policy.default
    )
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["List-Unsubscribe"] == f"<{UNSUB}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Zoë" in str(parsed["To"])


def test_link_shaped_name_is_not_spelled_out_as_a_url_in_the_text_part(renderer):
    out = renderer.render("gad/welcome", first_name="[click](https://evil.example)", unsubscribe_url=UNSUB)
    assert "[click](https://evil.example)" in out.text  # verbatim, as the lead typed it
    assert "click (https://evil.example)" not in out.text
