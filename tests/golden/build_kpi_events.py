#!/usr/bin/env python3
"""Writes tests/golden/kpi-events.ndjson: the hand-checkable KPI dataset.

The personas below are the whole dataset; kpi-expected.json holds the value of
every KPI, worked out by hand from this table (see the notes there), not by
running keyshift. Re-run after editing a persona and redo the arithmetic:

    python3 tests/golden/build_kpi_events.py
"""
import json
import pathlib

RP = "golden.example"
D1, D2 = "2026-11-02", "2026-11-03"
CLIENT = {
    "ios": {"os": "ios", "browser": "safari", "form_factor": "mobile", "app_type": "web"},
    "android": {"os": "android", "browser": "chrome", "form_factor": "mobile", "app_type": "web"},
    "windows": {"os": "windows", "browser": "edge", "form_factor": "desktop", "app_type": "web"},
    "linux": {"os": "linux", "browser": "firefox", "form_factor": "desktop", "app_type": "web"},
}
SYNCED = {"backup_eligible": True, "backup_state": True}
BOUND = {"backup_eligible": False, "backup_state": False}
NAE = {"name": "NotAllowedError"}

events = []


def ev(user, platform, at, etype, data, attempt=None):
    e = {
        "schema_version": 1,
        "event_id": f"g{len(events):04d}",
        "event_type": etype,
        "occurred_at": at,
        "rp_id": RP,
        "client": CLIENT[platform],
        "data": data,
    }
    if user is not None:
        e["user_id"] = user
    if attempt is not None:
        e["attempt_id"] = attempt
    events.append(e)


def t(day, hms):
    return f"{day}T{hms}Z"


# P1 — 12 iOS users: offered, started, created a synced passkey on D1; two
# passkey sign-ins on D2 (2 s each).
for i in range(12):
    u = f"p1-{i}"
    ev(u, "ios", t(D1, "09:00:00"), "enrollment.offered", {"entry_point": "post_login"})
    ev(u, "ios", t(D1, "09:00:05"), "enrollment.started", {"entry_point": "post_login"})
    ev(u, "ios", t(D1, "09:00:20"), "enrollment.succeeded", {"credential": SYNCED})
    for j in range(2):
        a = f"{u}-s{j}"
        ev(u, "ios", t(D2, f"1{j}:00:00"), "auth.started", {"method": "passkey"}, a)
        ev(u, "ios", t(D2, f"1{j}:00:02"), "auth.succeeded", {"method": "passkey", "duration_ms": 2000}, a)

# P2 — 9 iOS users: a password sign-in (10 s) on D1, then offered and skipped.
for i in range(9):
    u = f"p2-{i}"
    a = f"{u}-s0"
    ev(u, "ios", t(D1, "08:00:00"), "auth.started", {"method": "password"}, a)
    ev(u, "ios", t(D1, "08:00:10"), "auth.succeeded", {"method": "password", "duration_ms": 10000}, a)
    ev(u, "ios", t(D1, "08:00:11"), "enrollment.offered", {"entry_point": "post_login"})
    ev(u, "ios", t(D1, "08:00:15"), "enrollment.skipped", {"entry_point": "post_login"})
# Outside the range: before `from`, and exactly at `to` (the range is [from, to)).
ev("p2-0", "ios", "2026-11-01T23:59:59Z", "auth.succeeded", {"method": "password"}, "p2-0-early")
ev("p2-1", "ios", "2026-11-04T00:00:00Z", "enrollment.offered", {"entry_point": "post_login"})

# P3 — 6 Android users on D1: offered, a failed creation (NotAllowedError),
# then a device-bound passkey; then one passkey ceremony that failed once and
# succeeded on retry inside the same attempt (4 s): one ceremony, a success.
for i in range(6):
    u = f"p3-{i}"
    ev(u, "android", t(D1, "10:00:00"), "enrollment.offered", {"entry_point": "settings"})
    ev(u, "android", t(D1, "10:00:05"), "enrollment.started", {"entry_point": "settings"})
    ev(u, "android", t(D1, "10:00:09"), "enrollment.failed", {"error": NAE})
    ev(u, "android", t(D1, "10:00:30"), "enrollment.started", {"entry_point": "settings"})
    ev(u, "android", t(D1, "10:00:40"), "enrollment.succeeded", {"credential": BOUND})
    a = f"{u}-s0"
    ev(u, "android", t(D1, "11:00:00"), "auth.started", {"method": "passkey"}, a)
    ev(u, "android", t(D1, "11:00:02"), "auth.failed", {"method": "passkey", "error": NAE}, a)
    ev(u, "android", t(D1, "11:00:04"), "auth.succeeded", {"method": "passkey", "duration_ms": 4000}, a)

# P4 — 6 Android users with a device-bound passkey from October: on D2 a
# passkey ceremony abandoned (no outcome), then a password sign-in (8 s).
for i in range(6):
    u = f"p4-{i}"
    ev(u, "android", "2026-10-20T12:00:00Z", "enrollment.succeeded", {"credential": BOUND})
    ev(u, "android", t(D2, "12:00:00"), "auth.started", {"method": "passkey"}, f"{u}-s0")
    ev(u, "android", t(D2, "12:01:00"), "auth.started", {"method": "password"}, f"{u}-s1")
    ev(u, "android", t(D2, "12:01:08"), "auth.succeeded", {"method": "password", "duration_ms": 8000}, f"{u}-s1")

# P5 — 6 Windows users on D1: a passkey ceremony that fell back to password
# (no_credential), then a password ceremony (12 s). User p5-0 also contacts support.
for i in range(6):
    u = f"p5-{i}"
    a = f"{u}-s0"
    ev(u, "windows", t(D1, "14:00:00"), "auth.started", {"method": "passkey"}, a)
    ev(u, "windows", t(D1, "14:00:05"), "auth.fallback",
       {"from_method": "passkey", "to_method": "password", "reason": "no_credential"}, a)
    ev(u, "windows", t(D1, "14:00:06"), "auth.started", {"method": "password"}, f"{u}-s1")
    ev(u, "windows", t(D1, "14:00:18"), "auth.succeeded", {"method": "password", "duration_ms": 12000}, f"{u}-s1")
ev("p5-0", "windows", t(D1, "15:00:00"), "support.contacted", {"topic": "passkey_missing"})

# P6 — 3 Windows users with a synced passkey from October: on D2 one
# cross-device ceremony that succeeded (20 s, duration from the timestamps:
# no duration_ms) and one that failed (NotAllowedError).
for i in range(3):
    u = f"p6-{i}"
    ev(u, "windows", "2026-10-01T12:00:00Z", "enrollment.succeeded", {"credential": SYNCED})
    ev(u, "windows", t(D2, "16:00:00"), "auth.started", {"method": "passkey", "cross_device": True}, f"{u}-s0")
    ev(u, "windows", t(D2, "16:00:20"), "auth.succeeded", {"method": "passkey", "cross_device": True}, f"{u}-s0")
    ev(u, "windows", t(D2, "17:00:00"), "auth.started", {"method": "passkey", "cross_device": True}, f"{u}-s1")
    ev(u, "windows", t(D2, "17:00:30"), "auth.failed",
       {"method": "passkey", "error": NAE, "cross_device": True}, f"{u}-s1")

# P7 — 6 iOS users with a device-bound passkey from October, revoked on D1;
# on D2 an email recovery that completed, then a password sign-in (6 s).
for i in range(6):
    u = f"p7-{i}"
    ev(u, "ios", "2026-10-15T12:00:00Z", "enrollment.succeeded", {"credential": BOUND})
    ev(u, "ios", t(D1, "18:00:00"), "credential.revoked", {"reason": "lost_device"})
    ev(u, "ios", t(D2, "09:00:00"), "recovery.started", {"channel": "email"}, f"{u}-r")
    ev(u, "ios", t(D2, "09:05:00"), "recovery.completed", {"channel": "email"}, f"{u}-r")
    ev(u, "ios", t(D2, "09:06:00"), "auth.started", {"method": "password"}, f"{u}-s0")
    ev(u, "ios", t(D2, "09:06:06"), "auth.succeeded", {"method": "password", "duration_ms": 6000}, f"{u}-s0")

# P8 — 3 Linux users on D2: an SMS recovery that never completed, and a
# support contact. No sign-in.
for i in range(3):
    u = f"p8-{i}"
    ev(u, "linux", t(D2, "20:00:00"), "recovery.started", {"channel": "sms"}, f"{u}-r")
    ev(u, "linux", t(D2, "20:30:00"), "support.contacted", {"topic": "locked_out"})

# P9 — 1 anonymous conditional-UI passkey ceremony on iOS, D1, never finished
# (auth.started carries no user before identification), at 23:59:59.999.
ev(None, "ios", "2026-11-02T23:59:59.999Z", "auth.started",
   {"method": "passkey", "mediation": "conditional"}, "p9-s0")

out = pathlib.Path(__file__).with_name("kpi-events.ndjson")
out.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
print(f"{len(events)} events -> {out}")
