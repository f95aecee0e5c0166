#!/usr/bin/python3
"""check_dsn.py - parse a failure notice with Python's email package and
check its RFC 3464 structure (tests/integration/test_spool.c).

  check_dsn.py FILE --rcpt ADDR --diag TEXT --subject TEXT [--status 5.1.1]
               [--global]

FILE holds the notice exactly as the upstream received it. Exits 0 and
prints "DSN OK <summary>" when the notice is a multipart/report with
report-type=delivery-status whose parts are text/plain,
message/delivery-status (Reporting-MTA and Arrival-Date; for ADDR a
Final-Recipient, Action: failed, Status and a Diagnostic-Code of type smtp
containing TEXT) and text/rfc822-headers holding the original Subject;
otherwise exits 1 saying what is wrong.

--global: the notice must be RFC 6533's instead: parts text/plain,
message/global-delivery-status and message/global-headers, each 8-bit
part with Content-Transfer-Encoding: 8bit, and ADDR (UTF-8) in a
Final-Recipient of type utf-8. The email package does not parse
message/global-delivery-status into blocks, so its UTF-8 text is split
into blocks here (RFC 3464 2.1: blocks separated by empty lines).
"""
import argparse
import email
import email.policy
import sys


def fail(why):
    print("DSN BAD: " + why)
    sys.exit(1)


def raw_parts(data, boundary):
    """The (headers, body) bytes of each part of the top multipart."""
    delim = b"--" + boundary.encode()
    chunks = data.split(b"\r\n" + delim)
    out = []
    for c in chunks[1:]:
        if c.startswith(b"--"):
            break
        head, _, body = c[2:].partition(b"\r\n\r\n")
        out.append((head, body))
    return out


def global_blocks(raw):
    """The blocks of the message/global-delivery-status part, as dicts;
    every 8-bit part must say Content-Transfer-Encoding: 8bit."""
    for head, body in raw:
        if any(b >= 0x80 for b in body) and b"Content-Transfer-Encoding: 8bit" not in head:
            fail("a part with 8-bit text lacks Content-Transfer-Encoding: 8bit: %r" % head)
    text = raw[1][1].decode("utf-8")
    blocks = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        fields = {}
        for line in chunk.split("\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip()] = v.strip()
        if fields:
            blocks.append(fields)
    return blocks


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--rcpt", required=True)
    p.add_argument("--diag", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--status")
    p.add_argument("--global", dest="glob", action="store_true")
    a = p.parse_args()
    with open(a.file, "rb") as f:
        data = f.read()
    msg = email.message_from_bytes(data, policy=email.policy.default)
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
    want = (["text/plain", "message/global-delivery-status", "message/global-headers"]
            if a.glob else
            ["text/plain", "message/delivery-status", "text/rfc822-headers"])
    if types != want:
        fail("parts are %s" % types)
    if a.glob:
        raw = raw_parts(data, msg.get_boundary())
        if len(raw) != 3:
            fail("%d parts in the raw notice" % len(raw))
        blocks = global_blocks(raw)
    else:
        # message/delivery-status: the per-message block, then one block
        # per recipient; the email package gives each block as a Message.
        blocks = parts[1].get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        fail("delivery-status has %r blocks" % blocks)
    per_msg = blocks[0]
    for field in ("Reporting-MTA", "Arrival-Date"):
        if not per_msg.get(field):
            fail("no %s in the per-message fields" % field)
    found = None
    for b in blocks[1:]:
        fr = b.get("Final-Recipient") or ""
        ftype, _, faddr = fr.partition(";")
        if faddr.strip().lower() == a.rcpt.lower():
            found = b
            if a.glob and not a.rcpt.isascii() and ftype.strip().lower() != "utf-8":
                fail("Final-Recipient %r is not of type utf-8" % fr)
    if found is None:
        fail("no Final-Recipient for %s" % a.rcpt)
    if (found.get("Action") or "").lower() != "failed":
        fail("Action is %r" % found.get("Action"))
    status = found.get("Status") or ""
    if not status or status[0] not in "45" or status.count(".") != 2:
        fail("Status is %r" % status)
    if a.status and status != a.status:
        fail("Status is %r, expected %r" % (status, a.status))
    diag = found.get("Diagnostic-Code") or ""
    dtype, _, dtext = diag.partition(";")
    if dtype.strip().lower() != "smtp" or a.diag not in dtext:
        fail("Diagnostic-Code is %r" % diag)
    headers = raw[2][1] if a.glob else (parts[2].get_payload(decode=True) or b"")
    orig = email.message_from_bytes(headers, policy=email.policy.default)
    if orig["Subject"] != a.subject:
        fail("original Subject is %r" % orig["Subject"])
    explanation = parts[0].get_content()
    if a.rcpt not in explanation:
        fail("the explanation does not name %s" % a.rcpt)
    print("DSN OK status=%s reporting=%s recipients=%d" %
          (status, per_msg.get("Reporting-MTA"), len(blocks) - 1))


if __name__ == "__main__":
    main()
