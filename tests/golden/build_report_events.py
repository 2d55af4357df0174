#!/usr/bin/env python3
"""Writes tests/golden/report-events.ndjson: the adoption report's dataset.

Fourteen users of one relying party over three ISO weeks (W1 = 2026-10-05,
W2 = 2026-10-12, W3 = 2026-10-19; the report's range is [W1, 2026-10-26)),
plus history before the range. The expected report (tests/golden/report/*.csv)
was worked out by hand from the personas below; the arithmetic is in
tests/golden/report/README.md. Re-run after editing a persona and redo it:

    python3 tests/golden/build_report_events.py
"""
import json
import pathlib

RP = "report.example"
CLIENT = {
    "ios": {"os": "ios", "browser": "safari", "form_factor": "mobile", "app_type": "web"},
    "android": {"os": "android", "browser": "chrome", "form_factor": "mobile", "app_type": "web"},
    "windows": {"os": "windows", "browser": "edge", "form_factor": "desktop", "app_type": "web"},
    "linux": {"os": "linux", "browser": "chrome", "form_factor": "desktop", "app_type": "web"},
}
SYNCED = {"credential": {"backup_eligible": True, "backup_state": True}}
BOUND = {"credential": {"backup_eligible": False, "backup_state": False}}
OFFER = {"entry_point": "post_login"}

events = []


def ev(user, platform, at, etype, data, attempt=None):
    e = {
        "schema_version": 1,
        "event_id": f"r{len(events):04d}",
        "event_type": etype,
        "occurred_at": at,
        "rp_id": RP,
        "user_id": user,
        "client": CLIENT[platform],
        "data": data,
    }
    if attempt is not None:
        e["attempt_id"] = attempt
    events.append(e)


def sign_in(user, platform, at, method, n=0):
    a = f"{user}-s{n}"
    ev(user, platform, f"{at}:00Z", "auth.started", {"method": method}, a)
    ev(user, platform, f"{at}:05Z", "auth.succeeded", {"method": method, "duration_ms": 5000}, a)


# Cohort W1 (first offer in W1).
# a1 (iOS): offered Mon 10-05 10:00, synced passkey 1 h later; signs in twice in W1.
ev("a1", "ios", "2026-10-05T10:00:00Z", "enrollment.offered", OFFER)
ev("a1", "ios", "2026-10-05T11:00:00Z", "enrollment.succeeded", SYNCED)
sign_in("a1", "ios", "2026-10-06T08:00", "passkey", 0)
sign_in("a1", "ios", "2026-10-09T08:00", "passkey", 1)
# a2 (iOS): offered 10-05 10:00, synced passkey 8 days later (week 1 since offer).
ev("a2", "ios", "2026-10-05T10:00:00Z", "enrollment.offered", OFFER)
ev("a2", "ios", "2026-10-13T10:00:00Z", "enrollment.succeeded", SYNCED)
sign_in("a2", "ios", "2026-10-14T08:00", "passkey")
# a3 (iOS): offered 10-05 10:00, device-bound passkey 16 days later (week 2).
ev("a3", "ios", "2026-10-05T10:00:00Z", "enrollment.offered", OFFER)
ev("a3", "ios", "2026-10-21T10:00:00Z", "enrollment.succeeded", BOUND)
sign_in("a3", "ios", "2026-10-22T08:00", "passkey")
# a4 (iOS): offered 10-05 10:00, never enrolls; a password sign-in and a
# support contact in W1.
ev("a4", "ios", "2026-10-05T10:00:00Z", "enrollment.offered", OFFER)
sign_in("a4", "ios", "2026-10-06T09:00", "password")
ev("a4", "ios", "2026-10-06T09:30:00Z", "support.contacted", {"topic": "passkey_missing"})
# b1 (Android): offered Wed 10-07 12:00, device-bound passkey 30 min later;
# a passkey sign-in in W1, a failed one in W2; in W3 an SMS recovery that
# never completes and a support contact.
ev("b1", "android", "2026-10-07T12:00:00Z", "enrollment.offered", OFFER)
ev("b1", "android", "2026-10-07T12:30:00Z", "enrollment.succeeded", BOUND)
sign_in("b1", "android", "2026-10-08T08:00", "passkey")
ev("b1", "android", "2026-10-15T08:00:00Z", "auth.started", {"method": "passkey"}, "b1-s1")
ev("b1", "android", "2026-10-15T08:00:03Z", "auth.failed",
   {"method": "passkey", "error": {"name": "NotAllowedError"}}, "b1-s1")
ev("b1", "android", "2026-10-20T09:00:00Z", "recovery.started", {"channel": "sms"}, "b1-r")
ev("b1", "android", "2026-10-20T09:30:00Z", "support.contacted", {"topic": "locked_out"})
# b2 (Android): offered 10-07 12:00 and again 10-14 11:00, device-bound
# passkey 10-14 12:00 (168 h after the first offer).
ev("b2", "android", "2026-10-07T12:00:00Z", "enrollment.offered", OFFER)
ev("b2", "android", "2026-10-14T11:00:00Z", "enrollment.offered", OFFER)
ev("b2", "android", "2026-10-14T12:00:00Z", "enrollment.succeeded", BOUND)
sign_in("b2", "android", "2026-10-15T08:00", "passkey")

# Cohort W2.
# c1 (Windows): offered Tue 10-13 09:00, synced passkey 6 min later.
ev("c1", "windows", "2026-10-13T09:00:00Z", "enrollment.offered", OFFER)
ev("c1", "windows", "2026-10-13T09:06:00Z", "enrollment.succeeded", SYNCED)
sign_in("c1", "windows", "2026-10-13T10:00", "passkey")
# c2 (Windows): a password sign-in in W1 (before any offer); offered 10-13,
# skips; in W3 an SMS recovery and a support contact.
sign_in("c2", "windows", "2026-10-09T09:00", "password")
ev("c2", "windows", "2026-10-13T09:00:00Z", "enrollment.offered", OFFER)
ev("c2", "windows", "2026-10-13T09:00:05Z", "enrollment.skipped", OFFER)
ev("c2", "windows", "2026-10-21T09:00:00Z", "recovery.started", {"channel": "sms"}, "c2-r")
ev("c2", "windows", "2026-10-21T09:30:00Z", "support.contacted", {"topic": "locked_out"})
# c3 (Windows): offered 10-13, never enrolls; an email recovery in W3 that completes.
ev("c3", "windows", "2026-10-13T09:00:00Z", "enrollment.offered", OFFER)
ev("c3", "windows", "2026-10-22T09:00:00Z", "recovery.started", {"channel": "email"}, "c3-r")
ev("c3", "windows", "2026-10-22T09:10:00Z", "recovery.completed", {"channel": "email"}, "c3-r")

# Cohort W3.
# d1 (Linux, Chrome): offered Tue 10-20 09:00, device-bound passkey 3 h later.
ev("d1", "linux", "2026-10-20T09:00:00Z", "enrollment.offered", OFFER)
ev("d1", "linux", "2026-10-20T12:00:00Z", "enrollment.succeeded", BOUND)
sign_in("d1", "linux", "2026-10-21T08:00", "passkey")

# In no cohort of the range.
# e1 (iOS): first offered 09-30, before the range; synced passkey 10-06.
ev("e1", "ios", "2026-09-30T10:00:00Z", "enrollment.offered", OFFER)
ev("e1", "ios", "2026-10-06T10:00:00Z", "enrollment.succeeded", SYNCED)
sign_in("e1", "ios", "2026-10-14T09:00", "passkey")
# f1 (Android): a device-bound passkey 10-01, before any offer; offered
# 10-08 (already a holder); loses the device in W2: revoked, then an email
# recovery that completes.
ev("f1", "android", "2026-10-01T10:00:00Z", "enrollment.succeeded", BOUND)
ev("f1", "android", "2026-10-08T07:00:00Z", "enrollment.offered", OFFER)
sign_in("f1", "android", "2026-10-08T08:00", "passkey")
ev("f1", "android", "2026-10-16T10:00:00Z", "credential.revoked", {"reason": "lost_device"})
ev("f1", "android", "2026-10-16T10:05:00Z", "recovery.started", {"channel": "email"}, "f1-r")
ev("f1", "android", "2026-10-16T10:20:00Z", "recovery.completed", {"channel": "email"}, "f1-r")

out = pathlib.Path(__file__).with_name("report-events.ndjson")
out.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
print(f"{len(events)} events -> {out}")
