#!/usr/bin/env python3
"""Writes the seed corpora of the network targets into fuzz/corpus/<target>/ (git-ignored).

- sip_message: every message the SIPp scenarios of tests/sipp/ send, keywords filled in, and the
  messages of runtime/sip/tests/ua.rs (re-INVITE, INFO, REGISTER with digest, ...).
- sdp: the SDP bodies of those messages, a few offers of the crate's tests (G.729 first, hold,
  a browser's offer), and SIP INFO bodies (first line: Content-Type).
- sip_core: each SIPp scenario as a script for the target (see fuzz_targets/sip_core.rs): what
  SIPp sends, with the core's tags, branches, Call-IDs and nonces as `$` placeholders, its pauses
  as time advances; scenarios of an agent's phone start with the core dialing it. Plus scripts
  after runtime/sip/tests/ua.rs.
- rtp_dtmf: G.711 streams, an RFC 4733 key (marker, repeats, three end packets), a source on
  probation, CSRCs, a header extension, padding, RTCP.

Run from anywhere: python3 fuzz/seed.py
"""

import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"

SEND = re.compile(
    r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>\s*</send>"
    r"|<pause(?:\s+milliseconds=\"(\d+)\")?\s*/>"
    r"|<recv\s+(request|response)=\"([^\"]+)\"",
    re.S,
)

# SIPp keywords, as a caller or agent at 192.0.2.5:5060 talking to ivr at 127.0.0.2:5060.
COMMON = {
    "service": "10010",
    "remote_ip": "127.0.0.2",
    "remote_port": "5060",
    "local_ip": "192.0.2.5",
    "local_port": "5060",
    "transport": "UDP",
    "caller": "13800000001",
    "pid": "4242",
    "call_number": "1",
    "media_ip_type": "4",
    "media_ip": "192.0.2.5",
    "local_ip_type": "4",
    "rtpport": "50000",
    "media_port": "50000",
    "agentrtp": "50002",
    "contactport": "5060",
    "agent": "2001",
    "score": "5",
    "dtmf": "5",
    "pause": "1000",
    "next_url": "sip:ivr@127.0.0.2:5060",
    "$remote_contact": "sip:ivr@127.0.0.2:5060",
    "$local_to": "<sip:2001@192.0.2.5:5060>;tag=4242SIPpTag011",
}

# For sip_message: fixed values.
FIXED = dict(
    COMMON,
    **{
        "call_id": "1-4242@192.0.2.5",
        "peer_tag_param": ";tag=0123456789abcdef",
        "authentication": 'Authorization: Digest username="2001", realm="ivr", '
        'nonce="0000000000000000a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718", '
        'uri="sip:127.0.0.2:5060", response="0123456789abcdef0123456789abcdef", '
        'algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"',
        "$remote_from": "<sip:13800000001@127.0.0.2>;tag=leg1",
    },
)


def last_headers(method, placeholders):
    """[last_*:] of the request the scenario received (an INVITE or another request of ivr)."""
    if placeholders:
        branch, call_id = ("$B", "$C") if method == "INVITE" else ("$b", "$c")
    else:
        branch, call_id = "z9hG4bK0123456789abcdef", "abc-def@127.0.0.2"
    to = "<sip:2001@192.0.2.5:5060>"
    if method != "INVITE":
        to += ";tag=4242SIPpTag011"
    tag = "$L" if placeholders else "leg1"
    return {
        "last_Via:": f"Via: SIP/2.0/UDP 127.0.0.2:5060;branch={branch};rport",
        "last_From:": f"From: <sip:13800000001@127.0.0.2>;tag={tag}",
        "last_To:": f"To: {to}",
        "last_Call-ID:": f"Call-ID: {call_id}",
        "last_CSeq:": f"CSeq: {1 if method == 'INVITE' else 2} {method}",
    }


def message(cdata, values, n):
    """A SIPp <send> as bytes: lines dedented and ended with CRLF, keywords filled in."""
    lines = [l.strip() for l in cdata.strip("\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        i = lines.index("")
        head, body = lines[:i], lines[i + 1 :]
    else:
        head, body = lines, []
    body_text = "".join(l + "\r\n" for l in body)

    def fill(text):
        def one(m):
            k = m.group(1)
            if k == "branch":
                return f"z9hG4bK-{n}"
            if k == "len":
                return str(len(body_text.encode()))
            return values.get(k, m.group(0))

        return re.sub(r"\[([^\]\s]+)\]", one, text)

    body_text = fill(body_text)
    head = [fill(l) for l in head if l.strip() != "[routes]"]
    return ("\r\n".join(head) + "\r\n\r\n" + body_text).encode()


def scenario(path, placeholders):
    """The messages and pauses of a SIPp scenario: (kind, value) in order."""
    text = path.read_text()
    steps, received, n = [], "INVITE", 0
    uas = None
    for m in SEND.finditer(text):
        cdata, pause, rtype, rvalue = m.groups()
        if rtype:
            if uas is None:
                uas = rtype == "request"
            if rtype == "request":
                received = rvalue
            continue
        if cdata is None:
            steps.append(("pause", int(pause or 1000)))
            continue
        if uas is None:
            uas = False
        n += 1
        values = dict(FIXED)
        if placeholders:
            values.update(
                {
                    "peer_tag_param": ";tag=$T",
                    "authentication": "Authorization: $A",
                    "$remote_from": "<sip:13800000001@127.0.0.2>;tag=$L",
                    "call_id": "$C" if uas else "1-4242@192.0.2.5",
                }
            )
        values.update(last_headers(received, placeholders))
        steps.append(("send", message(cdata, values, n)))
    return bool(uas), steps


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def script(chunks):
    return b"\0".join(c if isinstance(c, bytes) else c.encode() for c in chunks)


def sip_seeds():
    bodies = []
    for path in sorted((ROOT / "tests" / "sipp").glob("*.xml")):
        uas, steps = scenario(path, placeholders=False)
        for i, (kind, v) in enumerate(steps):
            if kind == "send":
                write("sip_message", f"{path.stem}_{i}", v)
                body = v.split(b"\r\n\r\n", 1)[1]
                if body.strip():
                    bodies.append((f"{path.stem}_{i}", body))
        uas, steps = scenario(path, placeholders=True)
        chunks = ["D0"] if uas else []
        for kind, v in steps:
            chunks.append(b"R0" + v if kind == "send" else f"T{v}")
        write("sip_core", path.stem, script(chunks))
        # The same with a ringing time, over TCP, and with the calls ended by the application.
        write("sip_core", path.stem + "_ring", script(["O2" + "04"] + chunks + ["T3000"]))
        tcp = [c.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(b"R0", b"R2", 1) if isinstance(c, bytes) else c for c in chunks]
        write("sip_core", path.stem + "_tcp", script(["D2" if c == "D0" else c for c in tcp]))
        write("sip_core", path.stem + "_end", script(chunks + ["X01", "E0", "T40000"]))
    for name, body in bodies:
        write("sdp", name, body)
    return bodies


PHONE = "192.0.2.5:5060"


def req(head, ctype="", body=""):
    s = head.strip().replace("\n", "\r\n")
    if body:
        s += f"\r\nContent-Type: {ctype}"
    return f"{s}\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"


def phone_sdp(direction):
    return (
        "v=0\r\no=phone 1 2 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
        "m=audio 50000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )


def ua_seeds():
    """Scripts after runtime/sip/tests/ua.rs, with the core's identifiers as placeholders."""
    invite = req(
        f"""INVITE sip:10010@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK-inv1;rport
From: "Alice" <sip:13800000001@192.0.2.5>;tag=ph1
To: <sip:10010@127.0.0.2>
Call-ID: ua-1@192.0.2.5
CSeq: 1 INVITE
Contact: <sip:alice@{PHONE}>
Record-Route: <sip:proxy.example;lr>
Max-Forwards: 70""",
        "application/sdp",
        phone_sdp("sendrecv"),
    )
    ids = f"From: \"Alice\" <sip:13800000001@192.0.2.5>;tag=ph1\nTo: <sip:10010@127.0.0.2>;tag=$T\nCall-ID: ua-1@192.0.2.5"

    def indialog(method, cseq, branch, ctype="", body=""):
        return req(
            f"{method} sip:ivr@127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\n"
            f"{ids}\nCSeq: {cseq} {method}\nMax-Forwards: 70",
            ctype,
            body,
        )

    ack = indialog("ACK", 1, "z9hG4bK-ack1")
    reinvite = [
        indialog("INVITE", n + 2, f"z9hG4bK-re{n}", "application/sdp", phone_sdp(d))
        for n, d in enumerate(["sendonly", "inactive", "sendrecv"])
    ]
    infos = [
        indialog("INFO", 6, "z9hG4bK-i1", "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
        indialog("INFO", 7, "z9hG4bK-i2", "application/dtmf", "11"),
        indialog("INFO", 8, "z9hG4bK-i3", "text/plain", "7"),
    ]
    bye = indialog("BYE", 9, "z9hG4bK-bye")
    cancel = invite.replace("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
    late = re.sub(r"Content-Type.*", "Content-Length: 0\r\n\r\n", invite, flags=re.S)
    late_ack = indialog("ACK", 1, "z9hG4bK-ack1", "application/sdp", phone_sdp("sendrecv"))
    options = req(
        f"OPTIONS sip:127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-opt\n"
        "From: <sip:probe@192.0.2.5>;tag=o1\nTo: <sip:127.0.0.2>\nCall-ID: opt-1\nCSeq: 1 OPTIONS\nMax-Forwards: 70"
    )

    def register(cseq, extra=""):
        return req(
            f"REGISTER sip:127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-reg{cseq};rport\n"
            f"From: <sip:2001@127.0.0.2>;tag=ph1\nTo: <sip:2001@127.0.0.2>\nCall-ID: reg-1\n"
            f"CSeq: {cseq} REGISTER\nContact: <sip:2001@{PHONE}>\nMax-Forwards: 70{extra}"
        )

    # Responses of the callee of a leg we dial, and its own requests in the leg's dialog.
    def leg_resp(code, reason, totag=True, ctype="", body="", method="INVITE", lower=False):
        b, c = ("$B", "$C") if not lower else ("$b", "$c")
        to = "<sip:2001@192.0.2.5:5060>" + (";tag=agent1" if totag else "")
        s = (
            f"SIP/2.0 {code} {reason}\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch={b};rport\n"
            f"From: <sip:13800000001@127.0.0.2>;tag=$L\nTo: {to}\nCall-ID: {c}\nCSeq: {1 if method != 'BYE' else 2} {method}\n"
            f"Contact: <sip:2001@{PHONE}>"
        )
        return req(s, ctype, body)

    leg_ids = "From: <sip:2001@192.0.2.5:5060>;tag=agent1\nTo: <sip:13800000001@127.0.0.2>;tag=$L\nCall-ID: $C"
    leg_reinvite = req(
        f"INVITE sip:ivr@127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-hold;rport\n"
        f"{leg_ids}\nCSeq: 1 INVITE\nMax-Forwards: 70",
        "application/sdp",
        phone_sdp("sendonly"),
    )
    leg_ack = req(
        f"ACK sip:ivr@127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-hack;rport\n"
        f"{leg_ids}\nCSeq: 1 ACK\nMax-Forwards: 70"
    )
    leg_bye = req(
        f"BYE sip:ivr@127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-lbye;rport\n"
        f"{leg_ids}\nCSeq: 2 BYE\nMax-Forwards: 70"
    )
    R = lambda m: "R0" + m
    scripts = {
        "ua_call": [R(invite), R(ack), "T1000", *map(R, infos), R(bye), "T40000"],
        "ua_hold": [R(invite), R(ack), *[x for r in reinvite for x in (R(r), "T500")], "X01", "T40000"],
        "ua_ringing_cancel": ["O2" + "04", R(invite), "T500", R(cancel), "T40000"],
        "ua_no_ack": [R(invite), "T40000"],
        "ua_late_offer": [R(late), R(late_ack), "T1000", R(bye)],
        "ua_late_offer_bad_ack": [R(late), R(ack), "T1000"],
        "ua_retransmissions": [R(invite), R(invite), "T500", R(ack), R(ack), R(bye), R(bye), "T40000"],
        "ua_options_register": [R(options), R(register(1)), R(register(2, "\nAuthorization: $A")), "D5", "T100"],
        "ua_register_failures": [R(register(n)) for n in range(1, 6)] + ["T20000", R(register(7, "\nAuthorization: $A")), "C", R(register(8, "\nAuthorization: $A"))],
        "ua_leg_answered": [
            "D0",
            R(leg_resp(100, "Trying", totag=False)),
            R(leg_resp(180, "Ringing")),
            R(leg_resp(200, "OK", ctype="application/sdp", body=phone_sdp("sendrecv"))),
            R(leg_reinvite),
            R(leg_ack),
            R(leg_bye),
            "T40000",
        ],
        "ua_leg_busy": ["D1", R(leg_resp(486, "Busy Here")), R(leg_resp(486, "Busy Here")), "T40000"],
        "ua_leg_cancelled": ["D0", R(leg_resp(180, "Ringing")), "E0", R(leg_resp(200, "OK", method="CANCEL")), R(leg_resp(487, "Request Terminated")), "T40000"],
        "ua_leg_hangup": ["D0", R(leg_resp(200, "OK", ctype="application/sdp", body=phone_sdp("sendrecv"))), "E0", R(leg_resp(200, "OK", method="BYE", lower=True)), "T40000"],
        "ua_leg_timeout": ["D0", "T40000", "D0", R(leg_resp(180, "Ringing")), "T200000"],
        "ua_terminate_all": [R(invite), R(ack), "D0", "N", "K", "T1000", "X00", "T40000"],
    }
    for name, chunks in scripts.items():
        write("sip_core", name, script(chunks))
        for i, c in enumerate(chunks):
            if c.startswith("R0"):
                write("sip_message", f"{name}_{i}", c[2:].replace("$", "x").encode())
    for n, m in enumerate([invite, late_ack, *reinvite]):
        write("sdp", f"ua_{n}", m.split("\r\n\r\n", 1)[1].encode())


def sdp_seeds():
    offers = {
        "g729_first": "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\nm=video 5000 RTP/AVP 96\r\n",
        "hold": "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
        "only_g729": "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
        "ipv6": "v=0\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\nm=audio 4000/2 RTP/SAVP 0 96\r\n"
        "a=rtpmap:96 telephone-event/8000/1\r\na=recvonly\r\n",
        "browser": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126 101\r\nc=IN IP4 0.0.0.0\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/48000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
    }
    for name, text in offers.items():
        write("sdp", name, text.encode())
    for name, text in {
        "info_relay": "application/dtmf-relay\nSignal=5\r\nDuration=160\r\n",
        "info_dtmf": "application/dtmf; charset=x\n11",
    }.items():
        write("sdp", name, text.encode())


def rtp(pt, seq, ts, ssrc, payload, marker=False, first=0x80):
    return bytes([first, (0x80 if marker else 0) | pt]) + struct.pack(">HII", seq, ts, ssrc) + payload


def records(first, second, packets):
    out = bytes([first, second])
    for flags, p in packets:
        out += bytes([flags, min(len(p), 255)]) + p[:255]
    return out


def rtp_seeds():
    audio = [(0, rtp(0, 100 + i, 160 * i, 0x1234, bytes([0xFF]) * 160)) for i in range(5)]
    write("rtp_dtmf", "g711_from_sdp_address", records(101, 0x00, audio))
    key = [(0, rtp(101, 200, 8000, 0x1234, bytes([5, 10, 0, 160]), marker=True))]
    key += [(0, rtp(101, 201 + i, 8000, 0x1234, bytes([5, 10]) + struct.pack(">H", 160 * (i + 2)))) for i in range(2)]
    key += [(0, rtp(101, 203 + i, 8000, 0x1234, bytes([5, 0x8A, 3, 0x20]))) for i in range(3)]
    key += [(0, rtp(101, 206, 16000, 0x1234, bytes([11, 10, 0, 160]), marker=True))]
    write("rtp_dtmf", "rfc4733_keys", records(101, 0x00, key))
    nat = [(2, rtp(8, 65533 + i & 0xFFFF, 160 * i, 0x77, bytes([0xD5]) * 160)) for i in range(6)]
    nat += [(1, rtp(8, 7, 0, 0x99, bytes([0xD5]) * 160))]
    write("rtp_dtmf", "probation_then_locked", records(101, 0x14 | 0x04, nat))
    relearn = [(0, audio[0][1]), (0x04 | (1 << 4), audio[1][1]), (1, audio[2][1]), (0x08, audio[3][1])]
    write("rtp_dtmf", "relearn_and_relay", records(96, 0x20, relearn))
    odd = [
        (0, rtp(0, 1, 0, 1, struct.pack(">II", 11, 22) + bytes(20), first=0x82)),  # 2 CSRCs
        (0, rtp(0, 2, 0, 1, struct.pack(">HH", 0xBEDE, 1) + bytes(4) + bytes(20), first=0x90)),  # extension
        (0, rtp(0, 3, 0, 1, bytes(20) + bytes([0, 0, 4]), first=0xA0)),  # padding
        (0, rtp(72, 4, 0, 1, bytes(20), marker=True)),  # RTCP SR
        (0, bytes([0x81, 201]) + bytes(30)),  # RTCP RR
    ]
    write("rtp_dtmf", "csrc_extension_padding_rtcp", records(101, 0x40, odd))


def main():
    sip_seeds()
    ua_seeds()
    sdp_seeds()
    rtp_seeds()
    for t in ["sip_message", "sdp", "sip_core", "rtp_dtmf"]:
        print(t, len(list((CORPUS / t).iterdir())), "files")


if __name__ == "__main__":
    main()
