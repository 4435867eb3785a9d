"""Providers, Japanese carriers, generic cases and negatives (written from the formats)."""
from __future__ import annotations

from email.header import Header

from sources_a import DETAIL, inf

H, S = "hard", "soft"


def dsn_report(mta: str, blocks: list[dict[str, str]]) -> str:
    out = [f"Reporting-MTA: dns; {mta}\nArrival-Date: Mon, 07 Dec 2026 09:59:58 +0000\n"]
    for b in blocks:
        out.append("".join(f"{k}: {v}\n" for k, v in b.items()))
    return "\n".join(out)


def write_b(add, plain, mixed, original, date) -> None:  # noqa: ANN001, C901
    # -- GMX / web.de (1&1 mail platform, Exim-like text without indentation) -------------
    for src, host, addr, reason_line, status, reason, kind in (
        ("gmx", "gmx.net", "anna@gmx-dest.example", "550 5.1.1 <anna@gmx-dest.example>: "
         "Recipient address rejected: User unknown", "5.1.1", "userunknown", H),
        ("gmx", "gmx.net", "bert@gmx-dest.example", "552 5.2.2 Mailbox quota exceeded",
         "5.2.2", "mailboxfull", S),
        ("webde", "web.de", "carl@webde-dest.example", "554-Transaction failed\n554-Reject "
         "due to policy restrictions.\n554 For explanation visit https://postmaster.web.de/"
         "error-messages?ip=198.51.100.7&c=hi", inf("policyviolation"), "policyviolation", S),
        ("webde", "web.de", "dora@webde-dest.example", "550 5.1.1 Requested action not taken:"
         " mailbox unavailable", "5.1.1", "userunknown", H),
    ):
        body = ("This message was created automatically by mail delivery software.\n\n"
                "A message that you sent could not be delivered to one or more of\nits "
                "recipients. This is a permanent error. The following address(es)\nfailed:\n\n"
                f"{addr}:\nSMTP error from remote server for RCPT TO command, host: "
                f"mx.{addr.split('@')[1]} (192.0.2.90) reason: {reason_line}\n\n"
                "--- The header of the original message is following. ---\n\n"
                + original(addr).split("\n\n")[0] + "\n")
        add(src, f"{src} (1&1 mail platform) mailer-daemon text: no indentation, "
            "'reason:' inline", plain(f"Mail Delivery System <mailer-daemon@{host}>",
                                      "Mail delivery failed: returning message to sender",
                                      body),
            [(addr, status, kind, reason)])
    # -- mail.ru (Exim with Russian preface) -----------------------------------------------
    for addr, reply, status, reason, kind in (
        ("ivan@mailru-dest.example", "550 Message was not accepted -- invalid mailbox.  "
         "Local mailbox ivan@mailru-dest.example is unavailable: user not found",
         inf("userunknown"), "userunknown", H),
        ("olga@mailru-dest.example", "552 5.2.2 Mailbox is full / Блок переполнен", "5.2.2",
         "mailboxfull", S),
        ("petr@mailru-dest.example", "550 spam message rejected. Please visit "
         "http://help.mail.ru/notspam-support/id?c=abc or report details to abuse@corp.mail.ru."
         " Error code: 12345", inf("spamdetected"), "spamdetected", S),
    ):
        body = ("Это письмо создано автоматически\nсервером Mail.Ru, отвечать на него не нужно."
                "\n\nК сожалению, Ваше письмо не может быть доставлено одному или нескольким "
                "получателям:\n\n"
                "This message was created automatically by mail delivery software.\n\n"
                "A message that you sent could not be delivered to one or more of its\n"
                "recipients. This is a permanent error. The following address(es) failed:\n\n"
                f"  {addr}\n    SMTP error from remote mail server after RCPT TO:<{addr}>:\n"
                f"    host mx.mailru-dest.example [192.0.2.91]: {reply}\n")
        add("mailru", "mail.ru bounce: Russian preface, then Exim's English text (UTF-8)",
            plain("Mail Delivery System <MAILER-DAEMON@corp.mail.ru>",
                  "Mail failure.", body, charset="utf-8", cte="8bit",
                  extra=f"X-Failed-Recipients: {addr}\n"),
            [(addr, status, kind, reason)])
    # -- Yandex (DSN with a Russian human part) -------------------------------------------
    for addr, diag, status, reason, kind in (
        ("semen@yandex-dest.example", "smtp; 550 5.7.1 No such user!", "5.7.1", "userunknown",
         H),
        ("taras@yandex-dest.example", "smtp; 552 5.2.2 Mailbox size limit exceeded",
         "5.2.2", "mailboxfull", S),
        ("uliana@yandex-dest.example", "smtp; 554 5.7.1 [2] Message rejected under "
         "suspicion of SPAM; https://ya.cc/1IrBc", "5.7.1", "spamdetected", S),
    ):
        human = ("Здравствуйте!\n\nВаше письмо не удалось доставить по следующему адресу:\n"
                 f"{addr}\n\nЭто письмо отправлено автоматически, отвечать на него не нужно.\n")
        report = dsn_report("forward1.mail.yandex.net", [{
            "Final-Recipient": f"rfc822; {addr}", "Original-Recipient": f"rfc822;{addr}",
            "Action": "failed", "Status": status, "Remote-MTA": "dns; mx.yandex-dest.example",
            "Diagnostic-Code": diag}])
        add("yandex", "Yandex mail DSN with a Russian human-readable part (UTF-8)",
            mixed("mailer-daemon@yandex.ru", "Недоставленное сообщение", human,
                  orig=original(addr), report=report, human_charset="utf-8",
                  human_cte="8bit"),
            [(addr, status, kind, reason)])
    # -- Zoho Mail --------------------------------------------------------------------------
    for addr, why, status, reason, kind in (
        ("vera@zoho-dest.example", "Invalid Address (550 5.1.1 Recipient not found)", "5.1.1",
         "userunknown", H),
        ("walt@zoho-dest.example", "554 5.7.1 : Relay access denied", "5.7.1", "norelaying",
         S),
    ):
        body = ("This message was created automatically by mail delivery software.\n\n"
                "A message that you sent could not be delivered to one or more of its "
                "recipients.\nThis is a permanent error.\n\n"
                f"{addr}, ERROR CODE :550 - {why}\n\nReceived: from mail.zoho.example by "
                "mx.zoho.example\n")
        add("zoho", "Zoho Mail 'ERROR CODE :' line per recipient",
            plain("mailer-daemon@zoho.example", "Undelivered Mail Returned to Sender", body),
            [(addr, status, kind, reason)])
    # -- Outlook.com / Hotmail (DSN) -------------------------------------------------------
    for addr, diag, status, reason, kind in (
        ("xia@outlook-dest.example", "smtp;550 5.5.0 Requested action not taken: mailbox "
         "unavailable (S2017062302).", "5.5.0", "userunknown", H),
        ("yan@outlook-dest.example", "smtp;550 5.7.1 Unfortunately, messages from "
         "[198.51.100.7] weren't sent. Please contact your Internet service provider since "
         "part of their network is on our block list (S3150).", "5.7.1", "blocked", S),
    ):
        human = (f"Delivery has failed to these recipients or groups:\n\n{addr}\n"
                 "The recipient's mailbox is unavailable.\n")
        report = dsn_report("BN8NAM11HT123.mail.protection.outlook.com", [{
            "Final-Recipient": f"rfc822;{addr}", "Action": "failed", "Status": status,
            "Diagnostic-Code": diag}])
        add("outlookcom", "Outlook.com DSN (Exchange Online for consumers)",
            mixed("postmaster@outlook.com", "Undeliverable: Your booking at Hotel Aurora",
                  human, orig=original(addr), report=report),
            [(addr, status, kind, reason)])
    # -- NTT docomo (ISO-2022-JP) -----------------------------------------------------------
    for addr, jp, reason, kind in (
        ("taro@docomo-dest.example", "宛先不明のため配信できませんでした。(User unknown)",
         "userunknown", H),
        ("hana@docomo-dest.example", "受信者のメールボックスがいっぱいのため配信できませんでした。"
         "(容量超過)", "mailboxfull", S),
    ):
        text = ("このメールは自動的に送信されています。\n\n以下の宛先へのメールを配信できませんでした。"
                f"\n\n{addr}\n{jp}\n\n------ 元のメッセージ ------\n")
        add("docomo", "NTT docomo style notice in ISO-2022-JP (Japanese text)",
            plain("Mail Delivery Subsystem <MAILER-DAEMON@docomo.example>",
                  Header("配信エラー通知", "iso-2022-jp").encode(), "",
                  charset="ISO-2022-JP", raw_body=text.encode("iso-2022-jp")),
            [(addr, inf(reason), kind, reason)])
    # -- au / KDDI (ezweb) ------------------------------------------------------------------
    for addr, why, reason, kind in (
        ("jiro@au-dest.example", "(Unknown recipient)", "userunknown", H),
        ("kumi@au-dest.example", "(The number of messages in recipient's mailbox exceeded "
         "the local limit.)", "mailboxfull", S),
    ):
        body = (f"Your mail sent on: {date()}\n     could not be delivered to the following "
                f"address(es):\n\n  {addr}  {why}\n\n"
                "Please check the address(es) and try again.\n")
        add("au", "au/KDDI (ezweb) plain-text notice",
            plain("Postmaster <postmaster@au.example>",
                  "Mail System Error - Returned Mail", body),
            [(addr, inf(reason), kind, reason)])
    # -- SoftBank and i.softbank (Shift_JIS) --------------------------------------------------
    for src, addr, jp, reason, kind in (
        ("softbank", "saki@softbank-dest.example", "宛先が存在しません。(user unknown)",
         "userunknown", H),
        ("softbank", "yumi@softbank-dest.example", "受信者のメールボックス容量がいっぱいです。",
         "mailboxfull", S),
        ("isoftbank", "ken@isoftbank-dest.example", "このアドレスは存在しません。",
         "userunknown", H),
    ):
        text = ("このメールは配信できませんでした。\n\n"
                f"宛先: {addr}\n理由: {jp}\n\n--- 元のメールのヘッダ ---\n")
        add(src, f"{src} style notice in Shift_JIS (Japanese text)",
            plain("Mail Delivery System <MAILER-DAEMON@softbank.example>",
                  "Returned mail: User unknown" if reason == "userunknown"
                  else "Returned mail: see transcript for details", "",
                  charset="Shift_JIS", cte="8bit", raw_body=text.encode("shift_jis")),
            [(addr, inf(reason), kind, reason)])
    # -- DSNs without Final-Recipient ------------------------------------------------------
    addr = "quentin@nofinal-dest.example"
    report = dsn_report("relay.nofinal.example", [{
        "Action": "failed", "Status": "5.1.1",
        "Diagnostic-Code": "smtp; 550 5.1.1 Recipient unknown"}])
    add("dsnnofinal", "RFC 3464 DSN whose recipient block lacks Final-Recipient; the "
        "original's To: names the recipient",
        mixed("MAILER-DAEMON@relay.nofinal.example", "Delivery Status Notification (Failure)",
              "Your message could not be delivered.\n", orig=original(addr), report=report),
        [(addr, "5.1.1", H, "userunknown")])
    addr = "rosa@nofinal-dest.example"
    report = dsn_report("relay.nofinal.example", [{
        "Action": "failed", "Status": "5.2.2",
        "Diagnostic-Code": "smtp; 552 5.2.2 Quota exceeded"}])
    add("dsnnofinal", "DSN without Final-Recipient; the human part names the recipient",
        mixed("MAILER-DAEMON@relay.nofinal.example", "Delivery Status Notification (Failure)",
              f"Delivery to {addr} failed: mailbox full.\n", orig=original(
                  "Guests <guests@example.com>"), report=report),
        [(addr, "5.2.2", S, "mailboxfull")])
    # -- mbox 'From ' line in front of a Postfix DSN -----------------------------------
    for addr, said, status, reason, kind in (
        ("sven@mbox-dest.example", "550 5.1.1 <sven@mbox-dest.example>: Recipient address "
         "rejected: User unknown", "5.1.1", "userunknown", H),
        ("tove@mbox-dest.example", "554 5.7.1 Service unavailable; Client host "
         "[198.51.100.7] blocked using zen.spamhaus.org", "5.7.1", "blocked", S),
    ):
        human = ("This is the mail system at host relay.example.com.\n\nI'm sorry to have to "
                 "inform you that your message could not\nbe delivered to one or more "
                 "recipients.\n\n                   The mail system\n\n"
                 f"<{addr}>: host mx.mbox-dest.example[192.0.2.93] said: {said} (in reply to "
                 "RCPT TO command)\n")
        report = dsn_report("relay.example.com", [{
            "Final-Recipient": f"rfc822; {addr}", "Action": "failed", "Status": status,
            "Diagnostic-Code": f"smtp; {said}"}])
        data = mixed("MAILER-DAEMON@relay.example.com (Mail Delivery System)",
                     "Undelivered Mail Returned to Sender", human, orig=original(addr),
                     report=report)
        add("mbox", "a Postfix DSN as stored in an mbox file: 'From ' separator line first",
            b"From MAILER-DAEMON  Mon Dec  7 10:00:01 2026\n" + data,
            [(addr, status, kind, reason)])
    # -- delayed notices (soft, never hard) ----------------------------------------------------
    for addr, diag, status, reason in (
        ("ulf@delay-dest.example", "smtp; 451 4.7.1 Greylisting in action, please come back "
         "later", "4.7.1", "ratelimited"),
        ("vita@delay-dest.example", "smtp; 550 5.1.1 User unknown (temporary lookup failure)",
         "5.1.1", "userunknown"),
    ):
        human = ("This is the mail system at host relay.example.com.\n\n####################"
                 "########################################\n# THIS IS A WARNING ONLY.  YOU DO NOT "
                 "NEED TO RESEND YOUR MESSAGE. #\n#####################################"
                 "#######################\n\nYour message could not be delivered for more "
                 "than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n\n"
                 f"<{addr}>: {diag.split('; ', 1)[1]}\n")
        report = dsn_report("relay.example.com", [{
            "Final-Recipient": f"rfc822; {addr}", "Action": "delayed", "Status": status,
            "Diagnostic-Code": diag, "Will-Retry-Until": "Sat, 12 Dec 2026 10:00:00 +0000"}])
        add("delayed", "Postfix-style delay warning DSN (Action: delayed)",
            mixed("MAILER-DAEMON@relay.example.com (Mail Delivery System)",
                  "Delayed Mail (still being retried)", human, orig=original(addr),
                  report=report, headers_only=True),
            [(addr, status, S, reason)])
    # -- one DSN, four recipients, four reasons -------------------------------------------
    rcpts = [("wil@multi-dest.example", "5.1.1", "smtp; 550 5.1.1 User unknown", H,
              "userunknown"),
             ("xio@multi-dest.example", "5.2.2", "smtp; 552 5.2.2 Over quota", S,
              "mailboxfull"),
             ("yuki@multi-dest.example", "5.7.1", "smtp; 550 5.7.1 Client host rejected: "
              "cannot find your reverse hostname, [198.51.100.7]", S, "blocked"),
             ("zeno@multi-dest.example", "4.4.7", "smtp; 451 4.4.2 Timeout while waiting for "
              "command", S, "expired")]
    report = dsn_report("relay.example.com", [
        {"Final-Recipient": f"rfc822; {a}", "Action": "failed", "Status": st,
         "Diagnostic-Code": d} for a, st, d, _, _ in rcpts])
    add("multircpt", "DSN with four recipient blocks, one reason each",
        mixed("MAILER-DAEMON@relay.example.com (Mail Delivery System)",
              "Undelivered Mail Returned to Sender", "Some recipients failed.\n",
              orig=original(", ".join(a for a, *_ in rcpts)), report=report),
        [(a, st, k, r) for a, st, _, k, r in rcpts])
    # -- ARF complaints -------------------------------------------------------------------------
    for addr, ftype, ua in (("ana@fbl-dest.example", "abuse", "Yahoo!-Mail-Feedback/2.0"),
                            ("ben@fbl-dest.example", "abuse", "Microsoft JMRP/1.0"),
                            ("cid@fbl-dest.example", "fraud", "ComcastFBL/1.0")):
        b = f"arf{_hash(addr)}"
        data = (f"From: feedback@fbl.example\nTo: fbl@example.com\nSubject: FW: complaint\n"
                f"Date: {date()}\nMessage-ID: <arf{_hash(addr)}@fbl.example>\nMIME-Version: 1.0\n"
                f"Content-Type: multipart/report; report-type=feedback-report; "
                f"boundary=\"{b}\"\n\n--{b}\nContent-Type: text/plain\n\nThis is an email abuse "
                f"report for an email message received from IP 198.51.100.7.\n\n--{b}\n"
                f"Content-Type: message/feedback-report\n\nFeedback-Type: {ftype}\n"
                f"User-Agent: {ua}\nVersion: 1\nOriginal-Mail-From: <bounces@example.com>\n"
                f"Original-Rcpt-To: <{addr}>\nArrival-Date: {date()}\n"
                f"Source-IP: 198.51.100.7\n\n--{b}\nContent-Type: message/rfc822\n\n"
                f"{original(addr)}\n--{b}--\n").encode()
        add("arffbl", f"RFC 5965 ARF report ({ua})", data, [(addr, None, "complaint",
                                                             "feedback")])
    # -- auto-replies (not bounces) ---------------------------------------------------------
    for frm, subj, extra, body in (
        ("Jens Vogel <jens@auto-dest.example>", "Abwesenheitsnotiz: Your booking",
         "Auto-Submitted: auto-replied\n", "Ich bin bis zum 4. Januar nicht im Büro."),
        ("Aiko <aiko@auto-dest.example>", "Automatic reply: Your booking",
         "X-MS-Exchange-Inbox-Rules-Loop: aiko@auto-dest.example\nX-Auto-Response-Suppress: "
         "All\nIn-Reply-To: <bk1@app.example.com>\n", "I am out of the office until Monday."),
        ("Carla <carla@auto-dest.example>", "Out of Office: Your booking",
         "Precedence: auto_reply\n", "Thank you for your message. I am travelling."),
    ):
        add("autoresp", "RFC 3834 / de facto auto-reply",
            plain(frm, subj, body + "\n", charset="utf-8", cte="8bit", extra=extra,
                  to="booking@example.com"),
            [(frm.split("<")[1].rstrip(">"), None, "auto_reply", "vacation")], bounce=False)
    # -- success DSNs (not bounces) ------------------------------------------------------------
    for action, status in (("delivered", "2.0.0"), ("relayed", "2.0.0"),
                           ("expanded", "2.0.0")):
        addr = f"{action}@success-dest.example"
        report = dsn_report("mx.success-dest.example", [{
            "Final-Recipient": f"rfc822; {addr}", "Action": action, "Status": status,
            "Diagnostic-Code": "smtp; 250 2.0.0 Ok: queued as 4F1A2B"}])
        add("successdsn", f"RFC 3461 NOTIFY=SUCCESS report, Action: {action}",
            mixed("MAILER-DAEMON@mx.success-dest.example (Mail Delivery System)",
                  "Successful Mail Delivery Report", "Your message was successfully "
                  f"{action} to the following recipient:\n\n{addr}\n",
                  orig=original(addr), report=report, headers_only=True),
            [], bounce=False)
    # -- ordinary mail that talks about delivery (never a bounce) -------------------------------
    for frm, subj, body in (
        ("Parcel Service <noreply@parcels.example>", "Delivery failed: we missed you",
         "We tried to deliver your parcel to anna@example.net's address but nobody was home."
         " The delivery could not be completed; we will try again tomorrow."),
        ("Bob Guest <bob@guest.example>", "Re: Undeliverable booking email?",
         "Hi, I think your confirmation to bob.old@guest.example could not be delivered, "
         "the address no longer exists. Please use this one.\n\nBob"),
        ("postmaster@hosting.example", "Your mailbox storage report",
         "Your mailbox is 80% full. This is a monthly report; no action is needed."),
    ):
        add("ordinary", "ordinary mail about deliveries (negative)",
            plain(frm, subj, body + "\n", extra="", to="booking@example.com",
                  return_path="<" + frm.split("<")[-1].rstrip(">") + ">"), [],
            bounce=False)


def _hash(text: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(text)) % 100000


assert DETAIL


def write_c(add, plain, mixed, original, date) -> None:  # noqa: ANN001
    """Added after the first run: an SMTP protocol error (syntaxerror)."""
    addr = "olaf@proto-dest.example"
    said = "503 5.5.1 Error: nested MAIL command"
    human = ("This is the mail system at host relay.example.com.\n\nI'm sorry to have to "
             "inform you that your message could not\nbe delivered to one or more "
             "recipients.\n\n                   The mail system\n\n"
             f"<{addr}>: host mx.proto-dest.example[192.0.2.95] said: {said} (in reply to "
             "MAIL FROM command)\n")
    report = dsn_report("relay.example.com", [{
        "Final-Recipient": f"rfc822; {addr}", "Action": "failed", "Status": "5.5.1",
        "Diagnostic-Code": f"smtp; {said}"}])
    add("smtpproto", "Postfix-style DSN for an SMTP protocol error at the destination",
        mixed("MAILER-DAEMON@relay.example.com (Mail Delivery System)",
              "Undelivered Mail Returned to Sender", human, orig=original(addr),
              report=report), [(addr, "5.5.1", S, "syntaxerror")])
