"""submit.py PORT OUTDIR NAME RCPT[,RCPT...] [--wait N] [--count K]: send one message
through the MTA on PORT, then wait for K returned messages in the sink's inbox and
move them to OUTDIR/NAME[_k].eml."""
import glob
import os
import smtplib
import sys
import time
import uuid

INBOX = "/tmp/bounces/captured/inbox"

port, outdir, name, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
wait = float(sys.argv[sys.argv.index("--wait") + 1]) if "--wait" in sys.argv else 40
count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 1
sender = sys.argv[sys.argv.index("--from") + 1] if "--from" in sys.argv else "sender@src.test"
os.makedirs(outdir, exist_ok=True)
before = set(glob.glob(INBOX + "/*.eml"))
mid = f"<{uuid.uuid4().hex[:16]}@app.src.test>"
body = (f"From: Booking Desk <{sender}>\r\nTo: {', '.join(rcpts)}\r\n"
        f"Subject: Your booking confirmation {name}\r\nMessage-ID: {mid}\r\n"
        f"Date: Mon, 07 Dec 2026 14:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Dear guest,\r\n\r\nyour room is booked for 12-14 December.\r\n\r\nThe desk\r\n")
if "--big" in sys.argv:
    body += ("x" * 76 + "\r\n") * 4000
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    s.sendmail(sender, rcpts, body.encode())
deadline = time.time() + wait
got: list[str] = []
while time.time() < deadline and len(got) < count:
    time.sleep(0.5)
    got = sorted(set(glob.glob(INBOX + "/*.eml")) - before, key=os.path.getmtime)
for i, f in enumerate(got):
    dest = os.path.join(outdir, f"{name}.eml" if len(got) == 1 else f"{name}_{i + 1}.eml")
    os.replace(f, dest)
    print("captured", dest)
if not got:
    print("nothing for", name)
