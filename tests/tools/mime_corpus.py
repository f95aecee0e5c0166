#!/usr/bin/python3
"""mime_corpus.py - real-world MIME messages through the proxy's Graph JSON
path, compared with Python's email package as the independent reference.

Usage: mime_corpus.py --port P --record R --dir D [--dir D2 ...]

Each file (msg_*.txt, *.eml) in the directories is sent over SMTP to the
proxy on 127.0.0.1:P (smtplib: CRLF lines, dot-stuffing), whose route goes
to tests/tools/api_fake.py with save_to_sent_items: false, so that the
message arrives as Graph's JSON (sendMail with the body and every
attachment). What the stand-in recorded (R: the subject, the body text, the
attachments' names, content types and bytes) is compared with what
email.message_from_bytes(policy=email.policy.default) makes of the same
file:
  subject      str(msg["subject"]) (encoded words decoded), blanks folded;
  body         msg.get_body(("html", "plain")).get_content(), line ends and
               trailing blanks normalised ("" without one);
  attachments  every other leaf (message/* as one leaf), minus the
               body's alternatives and empty unnamed text: in order, the
               type, the name when the reference has one, and the decoded
               bytes (line ends normalised unless base64).
Prints one line per message (FAITHFUL or DIFFERS with the first difference)
and "CORPUS <faithful> faithful out of <sent>". Exit 0.
"""
import argparse
import email
import email.policy
import glob
import json
import os
import re
import smtplib
import sys
import time

TO = "anna@contoso.example"
FROM = "scanner@contoso.example"


def records(path, start):
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    return [json.loads(x) for x in lines[start:]], len(lines)


def norm_text(s):
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in s.split("\n")).strip()


def norm_bytes(b, cte):
    if cte == "base64":
        return b
    return b.replace(b"\r\n", b"\n").rstrip(b"\n")


def fold(s):
    return re.sub(r"\s+", " ", s or "").strip()


def leaves(part):
    """Leaves in order; a message/* part is one leaf (sent as it is)."""
    if part.get_content_maintype() == "message" or not part.is_multipart():
        yield part
        return
    for sub in part.iter_parts():
        yield from leaves(sub)


def in_alternative(msg, leaf):
    for p in msg.walk():
        if p.get_content_type() == "multipart/alternative" and p.is_multipart():
            for q in leaves(p):
                if q is leaf:
                    return True
    return False


def expected(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(preferencelist=("html", "plain"))
    want_body = ""
    if body is not None:
        try:
            want_body = body.get_content()
        except (LookupError, UnicodeError, AssertionError):
            want_body = body.get_payload(decode=True).decode("utf-8", "replace")
    atts = []
    for leaf in leaves(msg):
        if leaf is body or leaf is msg and body is msg:
            continue
        ctype = leaf.get_content_type()
        disp = leaf.get_content_disposition()
        text = ctype in ("text/plain", "text/html")
        if text and disp != "attachment" and in_alternative(msg, leaf):
            continue
        if ctype == "message/rfc822":
            inner = leaf.get_payload(0) if leaf.is_multipart() else None
            data = inner.as_bytes() if inner is not None else b""
            cte = "8bit"
        elif leaf.get_content_maintype() == "message":  # delivery-status, external-body
            whole = leaf.as_bytes().replace(b"\r\n", b"\n")
            data = whole.split(b"\n\n", 1)[1] if b"\n\n" in whole else b""
            cte = "8bit"
        else:
            data = leaf.get_payload(decode=True) or b""
            cte = (leaf.get("content-transfer-encoding") or "").strip().lower()
        name = leaf.get_filename()
        if ctype.startswith("text/") and not data and not name:
            continue
        atts.append({"type": ctype, "name": name, "data": data, "cte": cte})
    return str(msg.get("subject", "") or ""), want_body, atts


def compare(raw, got_msg, got_atts):
    subj, body, atts = expected(raw)
    if fold(got_msg.get("subject")) != fold(subj):
        return "subject %r, the reference %r" % (got_msg.get("subject"), subj)
    with open(got_msg["body_file"], "rb") as f:
        got_body = f.read().decode("utf-8")
    if norm_text(got_body) != norm_text(body):
        return "body %r..., the reference %r..." % (norm_text(got_body)[:60],
                                                     norm_text(body)[:60])
    if len(got_atts) != len(atts):
        return "%d attachments, the reference %d (%s)" % (
            len(got_atts), len(atts), ", ".join(a["type"] for a in atts))
    for i, (g, w) in enumerate(zip(got_atts, atts)):
        gtype = (g.get("contentType") or "").split(";")[0].strip().lower()
        if gtype != w["type"]:
            return "attachment %d: type %s, the reference %s" % (i, gtype, w["type"])
        if w["name"] and g.get("name") != w["name"]:
            return "attachment %d: name %r, the reference %r" % (i, g.get("name"), w["name"])
        with open(g["file"], "rb") as f:
            data = f.read()
        if w["type"] == "message/rfc822":
            data = email.message_from_bytes(data, policy=email.policy.default).as_bytes()
        elif w["type"].startswith("message/"):  # Python refolds the fields it re-serialises
            if fold(data.decode("latin-1")) != fold(w["data"].decode("latin-1")):
                return "attachment %d (%s): the fields differ" % (i, w["type"])
            continue
        if norm_bytes(data, w["cte"]) != norm_bytes(w["data"], w["cte"]):
            return "attachment %d (%s): %d bytes differ from the reference's %d" % (
                i, w["type"], len(data), len(w["data"]))
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--dir", action="append", required=True)
    a = p.parse_args()
    files = []
    for d in a.dir:
        files += sorted(glob.glob(os.path.join(d, "msg_*.txt")) + glob.glob(os.path.join(d, "*.eml")))
    if not files:
        print("CORPUS EMPTY: no messages under %s" % a.dir)
        return 1
    faithful = 0
    _, seen = records(a.record, 0) if os.path.exists(a.record) else ([], 0)
    for path in files:
        with open(path, "rb") as f:
            raw = f.read()
        name = os.path.basename(path)
        try:
            with smtplib.SMTP("127.0.0.1", a.port, timeout=30) as s:
                s.sendmail(FROM, [TO], raw)
        except (smtplib.SMTPException, OSError) as e:
            print("%s DIFFERS not sent: %s" % (name, str(e)[:200]))
            continue
        recs = []
        for _ in range(50):  # the stand-in writes its records before it answers
            recs, n = records(a.record, seen)
            if any(r.get("event") == "graph_sendmail" for r in recs):
                break
            time.sleep(0.05)
        seen += len(recs)
        msgs = [r for r in recs if r.get("event") == "graph_sendmail"]
        if len(msgs) != 1:
            print("%s DIFFERS the stand-in recorded %d messages" % (name, len(msgs)))
            continue
        why = compare(raw, msgs[0], [r for r in recs if r.get("event") == "attachment"])
        if why:
            print("%s DIFFERS %s" % (name, why))
        else:
            faithful += 1
            print("%s FAITHFUL" % name)
    print("CORPUS %d faithful out of %d" % (faithful, len(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
