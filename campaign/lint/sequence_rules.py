"""The rules for one audience's emails together: some things must be said somewhere in the
sequence (side effects, the intake), and the off-label status in every email about treatment.

Only the bodies count (the shared footer is cut), so a footer line cannot satisfy a rule.
"""

from __future__ import annotations

import re

from campaign.lint.registry import Finding, Messages, SequenceContext, sequence_rule

# Steps whose email describes ketamine treatment: each must state the off-label status itself.
OFF_LABEL_STEPS = ("ketamine", "treatment")
_OFF_LABEL = re.compile(r"\boff[\s-]label\b", re.I)
_SIDE_EFFECTS = re.compile(r"\bside[\s-]effects?\b", re.I)
_INTAKE = re.compile(r"\bintake\b", re.I)


@sequence_rule(
    "off-label",
    "The sequence, and each email about treatment, says ketamine for anxiety is off-label.",
)
def off_label(ctx: SequenceContext) -> Messages:
    for item in ctx.bodies:
        if item.step in OFF_LABEL_STEPS and not _OFF_LABEL.search(item.body):
            yield Finding(
                f"the {item.step!r} email describes ketamine treatment but does not say its use for anxiety "
                "is off-label; add a plain sentence saying so",
                template=ctx.template_of(item),
            )
    if not any(_OFF_LABEL.search(item.body) for item in ctx.bodies):
        yield (
            "no email in the sequence says ketamine's use for anxiety is off-label (not FDA-approved "
            "for any anxiety disorder); say so"
        )


@sequence_rule("side-effects", "Some email in the sequence names the side effects.")
def side_effects(ctx: SequenceContext) -> Messages:
    if not any(_SIDE_EFFECTS.search(item.body) for item in ctx.bodies):
        yield (
            "no email in the sequence names the side effects (dissociation, raised blood pressure and "
            "heart rate, nausea, drowsiness); add them"
        )


@sequence_rule("intake", "Some email in the sequence says treatment starts with an intake evaluation.")
def intake(ctx: SequenceContext) -> Messages:
    if not any(_INTAKE.search(item.body) for item in ctx.bodies):
        yield "no email in the sequence says treatment starts with an intake evaluation; add it"
