"""Word lists and sample names the lint rules use. Data only: edit here to tune the rules."""

from __future__ import annotations

# Condition, diagnosis and treatment words. None may appear in a subject, a preheader or a URL:
# those travel unencrypted, show on lock screens and in ESP logs, and would tell others that
# the reader has a condition or a treatment relationship. Matched whole-word, case-insensitive;
# in a multi-word term a space, hyphen or underscore matches any of the three.
DEFAULT_HEALTH_TERMS: tuple[str, ...] = (
    "anxiety",
    "anxieties",
    "anxious",
    "gad",
    "generalized anxiety",
    "social anxiety",
    "panic",
    "panic attack",
    "panic attacks",
    "depression",
    "depressed",
    "depressive",
    "treatment-resistant",
    "treatment resistant",
    "ptsd",
    "ocd",
    "bipolar",
    "trauma",
    "phobia",
    "phobias",
    "phobic",
    "disorder",
    "disorders",
    "worry",
    "worries",
    "worried",
    "worrying",
    "fear",
    "fears",
    "afraid",
    "mental health",
    "mental illness",
    "psychiatric",
    "psychiatrist",
    "psychiatry",
    "suicide",
    "suicidal",
    "self-harm",
    "ketamine",
    "esketamine",
    "spravato",
    "infusion",
    "infusions",
    "iv therapy",
    "ssri",
    "ssris",
    "snri",
    "snris",
    "benzodiazepine",
    "benzodiazepines",
    "benzo",
    "benzos",
    "antidepressant",
    "antidepressants",
    "diagnosis",
    "diagnosed",
    "diagnoses",
    "symptom",
    "symptoms",
)

# Words that promise results. None may appear anywhere in an email (subject, preheader, text).
DEFAULT_PROMISE_TERMS: tuple[str, ...] = (
    "cure",
    "cures",
    "cured",
    "curing",
    "curative",
    "guarantee",
    "guaranteed",
    "guarantees",
    "100%",
    "100 percent",
    "permanent",
    "permanently",
    "miracle",
    "miracles",
    "miraculous",
    "risk-free",
    "risk free",
    "no side effects",
    "will fix",
    "will heal",
    "will work",
    "always works",
    "proven to work",
    "clinically proven",
    "breakthrough",
    "life-changing",
)

# Words that, in a URL, give away which audience (condition) a reader belongs to.
URL_AUDIENCE_TERMS: tuple[str, ...] = (
    "anxiety",
    "gad",
    "social",
    "treatment_resistant",
    "audience",
    "diagnosis",
)

# Names that break naive templates: markup, very long, non-Latin scripts, right-to-left, empty.
HOSTILE_NAMES: tuple[str, ...] = (
    "<script>alert(1)</script>",
    'Ann" onmouseover="alert(1)',
    "Tom & Jerry's <b>Bold</b>",
    "[click](https://evil.example) **Sam**",
    "{{ clinic.phone }}",
    "A" * 200,
    "José",
    "Зоя",
    "李小龙",
    "محمد",
    "",
)

# The name the sequence rules' emails are rendered with (a plain, short, Latin name).
NEUTRAL_NAME = "Sam"
