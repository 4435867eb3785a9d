"""The last resort: any other mail system's human-written bounce (flufl.bounce's "simplematch").

Filtering appliances (Barracuda, IronPort, Mimecast, Sophos, Trend Micro,
McAfee), groupware (Domino, GroupWise, Oracle Messaging, Kerio, MDaemon,
hMailServer, Courier without its DSN part), webmail platforms (GMX, web.de,
Zoho) and mobile carriers (docomo, au, SoftBank, in ISO-2022-JP or
Shift_JIS) write one or a few sentences per failed recipient. What they
share, and what this detector requires, is three kinds of evidence:

1. a *failure sentence* in the human part ("could not be delivered", "was
   not delivered to", "undeliverable", "配信できませんでした", "не может быть
   доставлено", "konnte nicht zugestellt werden", …) — always required;
2. and a *sender* that is a mail system (MAILER-DAEMON, postmaster, "Mail
   Delivery System", an appliance's daemon name, the null return path `<>`,
   `X-Failed-Recipients`) or a *bounce subject* together with the returned
   original (a `message/rfc822` or `text/rfc822-headers` part);
3. and no sign of a person's reply ("Re:", "Fwd:" subjects), an
   out-of-office subject, or a mailing list (List-Id) from anyone but a
   mail system.

So a newsletter about parcel deliveries or a guest writing "my address
could not be delivered to" is never a bounce.

Recipients: `X-Failed-Recipients`, else the addresses of the human part
(before the returned original), leaving out the bounce's own From/To, role
addresses (postmaster, abuse…), addresses in echoed header lines (From:,
Message-ID:) and in URLs. Each recipient's diagnosis is the text from its
first mention to the next recipient's (the layouts put the reason after the
address: "because:", "Reason:", "Remote server replied:"), else the whole
human part. Permanence: "temporary", "delayed", "will retry" … say soft.

Security: the text is untrusted; it is capped (base.MAX_TEXT), searched with
linear patterns only, and the gate above keeps ordinary mail out.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.autoreply import AUTO_REPLY_SUBJECT
from gateway.bounces.detectors.base import (
    ADDRESS,
    Detector,
    body_text,
    clean_address,
    embedded_headers,
    failed_recipient,
    has_original,
    header,
    html_text,
    is_from_mailer_daemon,
)
from gateway.bounces.report import BounceRecipient
from gateway.bounces.status import find_status, infer

__all__ = ["Generic"]

_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|returning message|delivery (?:status notification"
    r"|failure|failed|problem|notification|report)|failure (?:notice|delivery)|mail delivery"
    r"|non[- ]?delivery|nondeliverable|could not (?:be )?deliver|message not delivered"
    r"|not delivered|delayed|mail (?:system )?error|mail failure|message status|rejected"
    r"|blocked|unzustellbar|nicht zustellbar|non remis|non distribuable|no entregado"
    r"|no se (?:pudo|puede) entregar|não entregue|non recapitat|onbestelbaar|olevererbar"
    r"|недоставлен|не доставлен|配信|エラー|未達|返送|退信|投递失败|发送失败|전송 ?실패",
    re.IGNORECASE)
_FAILURE = re.compile(
    r"could not be delivered|couldn'?t be delivered|cannot be delivered|can'?t be delivered"
    r"|was not delivered|were not delivered|not been delivered|has not yet been delivered"
    r"|could not deliver|unable to deliver|was undeliverable|undeliverable|delivery (?:has )?"
    r"failed|delivery to the following|failed permanently|permanent(?:ly)? (?:fatal )?(?:error"
    r"|failure)|fatal (?:delivery )?errors?|could not be reached|cannot be reached"
    r"|did not reach|following address(?:es|\(es\))? failed|rejected your message"
    r"|was (?:blocked|rejected)|were rejected|has been (?:blocked|rejected)|not delivered"
    r"|delivery (?:is )?delayed|temporary (?:failure|problem) delivering|will retry"
    r"|konnte nicht zugestellt|nicht zugestellt|unzustellbar|n'a pas pu être (?:remis|distribué)"
    r"|non (?:remis|distribué)|no (?:pudo|se pudo|ha podido) ser entregad|no se pudo entregar"
    r"|não (?:pôde|foi possível) ser entregue|não foi entregue|non è stato possibile consegnare"
    r"|non (?:è stato )?recapitat|kon niet worden afgeleverd|не (?:может быть|удалось|было)"
    r" доставлен|не удалось доставить|не доставлено|配信できません|配信できなかった|届きません"
    r"|送信できません|送達できません|not able to deliver|wasn'?t able to deliver"
    r"|failed to deliver|message could not be sent|permanent delivery failure"
    r"|投递失败|无法投递|退信|未能送达|전송 ?실패|전달되지 않|배달되지 않", re.IGNORECASE)
_REPLY = re.compile(r"^(?:re|fw|fwd|aw|wg|tr|sv|vs|antw|rif|r)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*(?:[-=_*]{2,}.{0,40}(?:original|copy of|forwarded|headers|元の|исходн|ursprüng)"
    r"|.{0,40}(?:original message (?:follows|headers|is attached|below)|original headers follow"
    r"|possibly truncated original|below (?:this line )?is a copy|below is a copy"
    r"|header of the original message|message headers follow|included message"
    r"|元のメッセージ|元のメール|исходное сообщение|ursprüngliche nachricht"
    r"|message d'origine|mensaje original|mensagem original)).*$",
    re.IGNORECASE | re.MULTILINE)
# A returned header block pasted into the text: a field at the start of a line.
_HEADER_BLOCK = re.compile(r"^(?:Return-Path|Received|DKIM-Signature|ARC-Seal|MIME-Version"
                           r"|Message-ID):", re.MULTILINE)
# Echoed header fields and transcript lines whose addresses are not failed recipients.
_ECHO = re.compile(r"^\s*(?:from|sender|reply-to|received)\s*:|(?:message-id|references"
                   r"|in-reply-to|return-path|envelope-from|mail from)\s*:", re.IGNORECASE)
# The label a layout puts before the explanation: what follows it is the diagnosis.
_LABEL = re.compile(r"(?:\breason|because|diagnostic(?: code)?|remote server replied|the "
                    r"reason for the problem|server returned|with this response|error code"
                    r"|理由|причина|grund)\s*:", re.IGNORECASE)
_ROLE = re.compile(r"^(?:mailer-daemon|postmaster|abuse|noreply|no-reply|donotreply"
                   r"|do-not-reply|hostmaster|webmaster|support|help|helpdesk|security"
                   r"|admin|administrator|root|notspam|unblock|delist|spam|ipcheck)"
                   r"(?:[+-][^@]*)?@", re.IGNORECASE)
_TEMPORARY = re.compile(r"temporar|delayed|will (?:be )?retr|will keep trying|not yet been"
                        r"|still trying|warning only|will try again|will continue",
                        re.IGNORECASE)
_MAX_RECIPIENTS = 100


class Generic(Detector):
    name = "generic"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        subject = header(msg, "Subject")[:300]
        if _REPLY.match(subject.lstrip()) or AUTO_REPLY_SUBJECT.search(subject.lstrip()):
            return None  # a person's reply, or an out-of-office (the AutoReply detector's)
        daemon = is_from_mailer_daemon(msg)
        if not daemon and (header(msg, "List-Id") or header(msg, "List-Unsubscribe")
                           or header(msg, "Auto-Submitted").lower().startswith("auto-replied")):
            return None  # a newsletter, a list message or a person's auto-reply
        text = body_text(msg) or html_text(msg)
        human = _human_part(text)
        if _FAILURE.search(human[:8000]) is None:
            return None
        failed_header = header(msg, "X-Failed-Recipients")
        sender = daemon or header(msg, "Return-Path") == "<>" or bool(failed_header)
        if not sender and not (_SUBJECT.search(subject) and has_original(msg)):
            return None
        found = _recipients(msg, human, failed_header)
        if not found:
            return None  # nobody named: not a bounce we can use (maybe an auto-reply)
        final = not _TEMPORARY.search(human[:8000] or subject)
        return [failed_recipient(address, _diagnosis(human, address, found), permanent=final)
                for address in found]


def _human_part(text: str) -> str:
    """The bounce's own words: the text before the returned original."""
    cut = len(text)
    for pattern in (_ORIGINAL, _HEADER_BLOCK):
        m = pattern.search(text)
        if m is not None and m.start() > 0:
            cut = min(cut, m.start())
    return text[:cut]


def _recipients(msg: EmailMessage, human: str, failed_header: str) -> list[str]:
    if failed_header:
        return list(dict.fromkeys(m[1] for m in ADDRESS.finditer(failed_header)))
    ours = {clean_address(header(msg, h)).lower()
            for h in ("From", "To", "Reply-To", "Return-Path", "Sender")}
    original = embedded_headers(msg)
    if original is not None:
        ours |= {clean_address(header(original, h)).lower()
                 for h in ("From", "Return-Path", "Sender", "Reply-To")}
    found: dict[str, str] = {}
    for line in human.splitlines():
        if _ECHO.search(line):
            continue
        for m in ADDRESS.finditer(line):
            address = m[1].strip(".,;:'\"")
            before = line[max(0, m.start() - 1):m.start()]
            key = address.lower()
            if before in ("=", "/", "?", "&", "%") or key in ours or _ROLE.match(address):
                continue
            found.setdefault(key, address)
            if len(found) >= _MAX_RECIPIENTS:
                return list(found.values())
    if not found and original is not None:
        to = [m[1] for m in ADDRESS.finditer(header(original, "To"))]
        if len(to) == 1:  # the only recipient of the returned message
            return to
    return list(found.values())


def _diagnosis(human: str, address: str, recipients: list[str]) -> str:
    """From the first mention of `address` to the next recipient's; all of the text if
    the address is not mentioned (X-Failed-Recipients, the original's To:)."""
    low = human.lower()
    start = low.find(address.lower())
    if start < 0:
        return " ".join(human.split())[:2000]
    end = len(human)
    for other in recipients:
        if other.lower() == address.lower():
            continue
        at = low.find(other.lower(), start + len(address))
        if 0 <= at < end:
            end = at
    segment = " ".join(human[start + len(address):end].split())[:2000]
    labelled = [segment[m.end():] for m in _LABEL.finditer(segment)]
    if labelled:  # "Reason: …" says it better than the boilerplate around it
        segment = " ".join(labelled)[:2000]
    if infer(segment)[0] == "undefined" and find_status(segment) is None:
        return " ".join(human.split())[:2000]  # the reason stands elsewhere
    return segment
