#!/usr/bin/python3
"""check_dsn.py - parse a failure notice with Python's email package and
check its RFC 3464 structure (tests/integration/test_spool.c).

  check_dsn.py FILE --rcpt ADDR --diag TEXT --subject TEXT [--status 5.1.1]

FILE holds the notice exactly as the upstream received it. Exits 0 and
prints "DSN OK <summary>" when the notice is a multipart/report with
report-type=delivery-status whose parts are text/plain,
message/delivery-status (Reporting-MTA and Arrival-Date; for ADDR a
Final-Recipient, Action: failed, Status and a Diagnostic-Code of type smtp
containing TEXT) and text/rfc822-headers holding the original Subject;
otherwise exits 1 saying what is wrong.
"""
import argparse
import email
import email.policy
import sys


def fail(why):
    print("DSN BAD: " + why)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--rcpt", required=True)
    p.add_argument("--diag", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--status")
    a = p.parse_args()
    with open(a.file, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        fail("top level is %s" % msg.get_content_type())
    if msg.get_param("report-type") != "delivery-status":
        fail("report-type is %r" % msg.get_param("report-type"))
    if not msg["From"] or "MAILER-DAEMON" not in str(msg["From"]):
        fail("From is %r" % msg["From"])
    if msg["Auto-Submitted"] != "auto-replied":
        fail("no Auto-Submitted: auto-replied")
    parts = list(msg.iter_parts())
    types = [x.get_content_type() for x in parts]
    if types != ["text/plain", "message/delivery-status", "text/rfc822-headers"]:
        fail("parts are %s" % types)
    # message/delivery-status: the per-message block, then one block per
    # recipient; the email package gives each block as a Message.
    blocks = parts[1].get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        fail("delivery-status has %r blocks" % blocks)
    per_msg = blocks[0]
    for field in ("Reporting-MTA", "Arrival-Date"):
        if not per_msg[field]:
            fail("no %s in the per-message fields" % field)
    found = None
    for b in blocks[1:]:
        fr = b["Final-Recipient"] or ""
        if fr.split(";", 1)[-1].strip().lower() == a.rcpt.lower():
            found = b
    if found is None:
        fail("no Final-Recipient for %s" % a.rcpt)
    if (found["Action"] or "").lower() != "failed":
        fail("Action is %r" % found["Action"])
    status = found["Status"] or ""
    if not status or status[0] not in "45" or status.count(".") != 2:
        fail("Status is %r" % status)
    if a.status and status != a.status:
        fail("Status is %r, expected %r" % (status, a.status))
    diag = found["Diagnostic-Code"] or ""
    dtype, _, dtext = diag.partition(";")
    if dtype.strip().lower() != "smtp" or a.diag not in dtext:
        fail("Diagnostic-Code is %r" % diag)
    headers = parts[2].get_payload(decode=True) or b""
    orig = email.message_from_bytes(headers, policy=email.policy.default)
    if orig["Subject"] != a.subject:
        fail("original Subject is %r" % orig["Subject"])
    explanation = parts[0].get_content()
    if a.rcpt not in explanation:
        fail("the explanation does not name %s" % a.rcpt)
    print("DSN OK status=%s reporting=%s recipients=%d" %
          (status, per_msg["Reporting-MTA"], len(blocks) - 1))


if __name__ == "__main__":
    main()
