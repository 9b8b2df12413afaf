"""A bulk step groups its recipients while its claims are written (campaign.bulk.draft_bulk,
run beside Ledger.claim): given the claims, the draft must be what group_for_bulk makes of
them, also when some wanted steps were not claimed (another run had their rows)."""

from __future__ import annotations

from dataclasses import astuple

from test_workers import MONDAY_10 as MONDAY
from test_workers import enrolled_context

from campaign.bulk import BULK_MIN_RECIPIENTS, draft_bulk, group_for_bulk
from campaign.engine import due_batches


def grouped(bulk, single) -> tuple[list, list]:
    return (
        [(g.html, g.text, g.category, [astuple(r) for r in g.recipients]) for g in bulk],
        sorted(c.send_id for c in single),
    )


def test_the_draft_given_its_claims_is_what_group_for_bulk_makes_of_them(make_settings):
    ctx = enrolled_context(make_settings, make_settings().database_url, 60, batch_size=100)
    (batch,) = list(due_batches(ctx, MONDAY))
    audiences = ctx.audience_by_name
    wanted = {d.enrollment_id: (d, audiences[d.audience], "welcome") for d in batch}
    pairs = [(e, key) for e, (_, _, key) in wanted.items()]
    draft = draft_bulk(ctx, wanted, MONDAY)
    first = draft.bulk[0]
    # Another run claimed 6 of the first group's steps: left with fewer than the minimum.
    taken = set(list(draft.members[0])[: len(first.recipients) - BULK_MIN_RECIPIENTS + 1])
    taken_ids = {m.enrollment_id for m in taken}
    assert len(draft.bulk) >= 2 and len(taken_ids) > 0
    ctx.store.claim([p for p in pairs if p[0] in taken_ids], MONDAY, "other")
    claims = ctx.store.claim(pairs, MONDAY, ctx.transport.name)
    assert len(claims) == len(pairs) - len(taken_ids)
    campaigns = {c["id"]: c for c in ctx.store.campaigns()}
    expected = group_for_bulk(ctx, claims, wanted, campaigns, ctx.bulk_composer, ctx.review_credits(MONDAY))
    got = draft.claimed(claims)
    # The tokens' issue time (seconds) may differ between the two groupings: compare without.
    assert _no_token(grouped(*got)) == _no_token(grouped(*expected))
    assert all(r.send_id for g in got[0] for r in g.recipients)
    assert len(got[0]) == len(draft.bulk) - 1  # the first group went one email each
    ctx.store.close()


def _no_token(found):
    groups, single = found
    return [(h, t, c, [r[:4] for r in rs]) for h, t, c, rs in groups], single
