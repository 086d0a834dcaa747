#!/usr/bin/env python3
"""fault_backend.py: a strict, fault-injecting ESMTP backend MTA.

smtplb's integration tests put one process of this behind smtplb per
backend.  It speaks server-side ESMTP the way a strict real MTA does, stores
every message it accepts, and can be told to fail at any step so that the
tests can prove smtplb's transactional failover (DESIGN.md "The data path",
step 5).  Python 3 standard library only; loopback addresses only.

Protocol (RFC 5321 / 2920 / 1870 / 6152 / 6531 / 2034):
  EHLO advertises PIPELINING, SIZE <max_size>, 8BITMIME, SMTPUTF8 and
  ENHANCEDSTATUSCODES, then STARTTLS (with --tls-cert, before TLS) and
  XCLIENT (with --xclient) (any of them can be left out with omit_ehlo);
  HELO, MAIL, RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT, and STARTTLS and
  XCLIENT when advertised.  Anything else (XCLIENT or STARTTLS when not
  advertised, XFORWARD, BDAT, ...) is 500 5.5.2.  A command line ends only
  at CR LF; a bare CR, LF or NUL in it is 500 5.5.2; a line over 512 octets
  (2048 for MAIL/RCPT, and XCLIENT when advertised) is one 500 5.5.2 and
  the rest of it is discarded.  MAIL before
  EHLO, RCPT before MAIL, DATA before RCPT are 503 5.5.1; unknown MAIL/RCPT
  parameters are 555 5.5.4.  DATA ends only at CR LF . CR LF; the content is
  dot-unstuffed.

Storage, in STORE/ (the --store directory):
  msgs/<id>.eml    the message bytes after dot-unstuffing, exactly
  msgs/<id>.json   envelope: id, backend, mail_from, mail_params, rcpts, helo,
                   peer, size, sha256, test_id (X-Test-Id header), conn,
                   tls (true/false: the message came over TLS), tls_version,
                   tls_cipher (null without TLS), xclient (the XCLIENT
                   attributes in effect for it, {"ADDR": ..., ...}, or null
                   when no XCLIENT was accepted on its connection), proxy
                   (its connection's PROXY header: {"version", "command",
                   "family", "source", "source_port", "dest", "dest_port"},
                   or null)
  events.jsonl     one JSON object a line: listening, connect, cmd (every
                   command line as received), fault (each injected fault),
                   stored, data_aborted (the client went away inside DATA,
                   without the final dot), data_bare_line_ending,
                   data_long_line, disconnect, control (file re-read),
                   and for TLS, XCLIENT and PROXY (see below): tls,
                   tls_failed, starttls_pipelined, xclient, xclient_refused,
                   proxy, proxy_error
  ready.json       {"port", "pid", "name"}, written once the port is bound
                   (and listening, unless refusing)
The .eml is renamed into place before the .json and both before the 250 is
written: a client that saw 250 finds the message on disk.

Faults come from flags and, on top of them, from a JSON control file
(--control) with the same keys (underscores), which the test may rewrite at
any time (write a temporary file, rename it over).  It is re-read when it
changes: at every connection, before every command and every 50 ms.

  refuse             bind the port but do not listen: connections are refused
                     (true/false can be switched through the control file)
  banner             reply instead of the 220 greeting, e.g. "421 4.3.2 busy";
                     the connection is closed after it
                     (every configured reply may hold LF: it is sent as
                     several lines, as written -- a multi-line or malformed
                     reply)
  ehlo_reply         reply to EHLO/HELO instead of 250
  mail_reply         reply to MAIL instead of 250
  rcpt_replies       {"user@dom": "550 5.1.1 no such user", ...} (case-
                     insensitive); "drop" or "hang" instead of a reply drops
                     the connection or stops answering at that RCPT; not
                     counted by fault_limit
  reject_rcpt_pattern  a regular expression; a RCPT address matching it gets
                     550 5.1.1; not counted by fault_limit
  rcpt_ok_reply      the reply to a recipient it accepts, instead of
                     "250 2.1.5 ...", e.g. "251 2.1.5 User not local"
  data_reply         reply to DATA instead of 354
  eod_reply          reply at end of data instead of storing and 250
  drop_at            banner|ehlo|mail|rcpt|data: close the connection instead
                     of replying at that step
  drop_data_after    N: close once N octets of the DATA stream (after 354)
                     have arrived, without a reply (0: right after the 354);
                     "eod": read the whole message and its final dot, then
                     close without a reply, storing nothing
  hang               banner|ehlo|mail|rcpt|data|eod: stop replying at that
                     step; keep reading (and ignoring) until the peer closes;
                     body: after the 354, stop reading altogether (the peer's
                     writes block once the socket buffers are full)
  delay_eod          seconds to wait before the end-of-data reply (with
                     --eod-capacity, see below, a slot held that long)
  mail_extra         a reply line sent, unsolicited, after the 250 to MAIL, in
                     the same write as the next reply (counted by fault_limit)
  data_extra         a reply line sent, unsolicited, behind the 354 (in the
                     same write; with data_extra_delay, that many seconds
                     later, while the data comes in; event data_extra_sent)
                     (counted by fault_limit)
  eod_extra          a reply line sent, unsolicited, right after the 250 at
                     end of data (counted by fault_limit); with
                     eod_extra_delay, that many seconds after it
  fault_limit        the counted faults (banner, ehlo_reply, mail_reply,
                     data_reply, eod_reply, eod_extra, drop_at,
                     drop_data_after, hang)
                     fire this many times in all, then never; null: always.
                     The count restarts when the control file changes.
  omit_ehlo          EHLO keywords not to advertise, e.g. ["PIPELINING"]
  max_size           the SIZE limit in octets (default 104857600)

TLS, XCLIENT and the PROXY protocol (RFC 3207, RFC 8314, Postfix
XCLIENT_README, HAProxy proxy-protocol.txt):

  --tls-cert FILE, --tls-key FILE  (flags only) a PEM certificate (chain)
                     and key (--tls-key may be left out when the cert file
                     holds the key): STARTTLS is advertised in EHLO until
                     TLS is on, unless --implicit-tls.  STARTTLS with an
                     argument is 501, inside a transaction or over TLS 503
                     5.5.1.  Bytes the client sent after "STARTTLS\r\n"
                     before the handshake are discarded and logged
                     (event starttls_pipelined, with the data): that is the
                     CVE-2011-0411 pattern.  After the handshake (TLS 1.2
                     or later) the session is reset as RFC 3207 4.2 says:
                     EHLO is needed again (MAIL before it is 503 5.5.1).
                     Event tls: conn, version, cipher, implicit, sni (the
                     server name the client asked for, or null); a failed
                     handshake is event tls_failed (conn, error) and the
                     connection is closed.
  --implicit-tls     (flag only, needs --tls-cert) TLS from the first byte,
                     port-465 style (RFC 8314): the handshake, then the 220
                     greeting; STARTTLS is not offered.
  require_tls        true: MAIL before TLS is 530 5.7.0 (flag --require-tls)
  starttls_reply     reply to STARTTLS instead of 220 (e.g. "454 4.7.0 TLS
                     not available"); the session stays in plain text
  starttls_inject    text sent right after "220 2.0.0 Ready to start TLS" in
                     the same write, before the handshake (a reply: LF
                     becomes CR LF, CR LF is appended), e.g. "250 2.0.0
                     injected": the backend response injection of
                     CVE-2021-38371.  The handshake then goes on as usual.
  omit_starttls      true: do not advertise STARTTLS (and refuse the command
                     with 500 5.5.2), as omit_ehlo ["STARTTLS"] does
  --xclient          (flag only) advertise "XCLIENT NAME ADDR PORT PROTO
                     HELO LOGIN" and accept XCLIENT attribute=value ...:
                     names case-insensitive, values xtext (RFC 3461: "+"
                     and two upper-case hex digits; anything else outside
                     "!".."~", or "+" or "=" raw, is 501 5.5.4), ADDR an
                     IPv4 address or IPV6:address, PORT 0..65535, PROTO
                     SMTP or ESMTP, any value may be [UNAVAILABLE] or
                     [TEMPUNAVAIL].  Errors: 501 5.5.4 (syntax, unknown
                     attribute, bad value), 503 5.5.1 inside a transaction.
                     Accepted: "220 <name> ESMTP fault_backend" and the
                     session is reset, as Postfix does (EHLO again).  As in
                     Postfix, an attribute stays in effect until a later
                     XCLIENT on the same connection changes it.  Event
                     xclient: conn, attrs (this command's, decoded),
                     in_effect (all now in effect), line.  Without
                     --xclient, XCLIENT is 500 5.5.2.
  xclient_reply      reply to a valid XCLIENT instead of the 220 (e.g. "550
                     5.7.0 Error: insufficient authorization"); nothing
                     changes (event xclient_refused)
  --proxy-protocol   (flag only) every connection must begin with a PROXY
                     v1 or v2 header, within --proxy-timeout seconds
                     (default 5), before TLS and before the greeting
                     (nothing is sent until it arrived).  v1: "PROXY TCP4|
                     TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n",
                     at most 107 octets, single spaces, no leading zeros;
                     v2: the 12-octet signature, version 2, command LOCAL
                     or PROXY, family UNSPEC, TCP4, TCP6 (or UDP/UNIX,
                     recorded as such), a length that holds the addresses,
                     TLVs well-formed.  Event proxy: conn, version,
                     command, family, source, source_port, dest, dest_port,
                     tlvs (v2: [[type, hex value], ...]); a missing,
                     malformed or late header is event proxy_error (conn,
                     error, data: the octets read) and the connection is
                     closed without a greeting.
  The counted faults include starttls_reply, starttls_inject and
  xclient_reply.

Capacity, a flag only (not in the control file): --eod-capacity N lets at
most N sessions wait out delay_eod at the same time, first come first
served; the others queue for a slot.  The backend then processes N messages
at a time, each taking delay_eod, i.e. at most N / delay_eod messages a
second, the way a real MTA's CPU and disk bound it: past that rate a queue
builds up and its latency grows with the queue.  0, the default: every
session waits on its own, no limit (more latency, but no less throughput).

Usage:
  fault_backend.py --store DIR [--port N] [--host 127.0.0.1] [--name NAME]
      [--control FILE] [--refuse] [--banner R] [--ehlo-reply R]
      [--mail-reply R] [--rcpt-reply ADDR=R ...] [--reject-rcpt-pattern RE]
      [--data-reply R] [--eod-reply R] [--drop-at STEP]
      [--drop-data-after N|eod] [--hang STEP] [--delay-eod S] [--eod-capacity N]
      [--fault-limit N] [--omit-ehlo KEYWORD ...] [--max-size N]
      [--tls-cert FILE [--tls-key FILE] [--implicit-tls]] [--require-tls]
      [--starttls-reply R] [--starttls-inject R] [--omit-starttls]
      [--xclient] [--xclient-reply R] [--proxy-protocol [--proxy-timeout S]]

Every wait is bounded: a session idle for --idle-timeout seconds (default
120) is closed, a hung one after --hang-timeout (default 600); SIGTERM and
SIGINT end the process.
"""

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import sys
import time

DEFAULTS = {
    "refuse": False,
    "banner": None,
    "ehlo_reply": None,
    "mail_reply": None,
    "rcpt_replies": {},
    "reject_rcpt_pattern": None,
    "rcpt_ok_reply": None,
    "data_reply": None,
    "eod_reply": None,
    "drop_at": None,
    "drop_data_after": None,
    "hang": None,
    "delay_eod": 0.0,
    "eod_extra": None,
    "eod_extra_delay": 0.0,
    "mail_extra": None,
    "data_extra": None,
    "data_extra_delay": 0.0,
    "fault_limit": None,
    "omit_ehlo": [],
    "max_size": 100 * 1024 * 1024,
    "require_tls": False,
    "starttls_reply": None,
    "starttls_inject": None,
    "omit_starttls": False,
    "xclient_reply": None,
}

STEPS = ("banner", "ehlo", "mail", "rcpt", "data", "body", "eod")
EHLO_KEYWORDS = ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES")
MAX_COMMAND_LINE = 512    # RFC 5321 4.5.3.1.4, with CR LF
MAX_ENVELOPE_LINE = 2048  # MAIL/RCPT with parameters (RFC 5321 4.5.3.1.4 allows more)
MAX_TEXT_LINE = 1000      # RFC 5321 4.5.3.1.6, with CR LF
MAX_RECIPIENTS = 1000
READ_CHUNK = 65536
XCLIENT_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN")
XCLIENT_SPECIAL = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PROXY_V1_MAX = 107  # with CR LF (proxy-protocol.txt 2.1)

PATH_RE = re.compile(rb"^(FROM|TO):<([^<>]*)>(.*)$", re.IGNORECASE | re.DOTALL)
TEST_ID_RE = re.compile(rb"^X-Test-Id:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class Closed(Exception):
    """The peer closed the connection, or we closed it on purpose."""


class Backend:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.store = os.path.abspath(args.store)
        self.msgs = os.path.join(self.store, "msgs")
        os.makedirs(self.msgs, exist_ok=True)
        self.events_file = open(os.path.join(self.store, "events.jsonl"), "a", buffering=1)
        self.flags = dict(DEFAULTS)
        self.flags.update(flag_faults(args))
        self.control_path = args.control
        self.control_sig = None
        self.control = {}
        self.faults_fired = 0
        self.conn_seq = 0
        self.msg_seq = 0
        self.active = 0
        self.port = args.port
        self.server = None
        self.bound_sock = None  # bound, not listening, while refusing
        self.stopping = asyncio.Event()
        # --eod-capacity: the slots for the end-of-data delay.  asyncio's
        # Semaphore wakes its waiters in arrival order, so the queue is FIFO.
        self.eod_slots = asyncio.Semaphore(args.eod_capacity) if args.eod_capacity else None
        self.eod_queued = 0  # sessions waiting for a slot now
        self.tls_ctx = make_tls_context(args) if args.tls_cert else None
        # Implicit TLS and the PROXY header need the raw socket before any
        # stream reads from it: such listeners accept on their own.
        self.own_accept = bool(args.implicit_tls or args.proxy_protocol)
        self.tasks = set()

    async def eod_delay(self, conn):
        """Waits delay_eod before an end-of-data reply: on its own, or, with
        --eod-capacity N, in one of N slots (a backend that processes N
        messages at a time), queueing first while all N are taken."""
        delay = float(self.opt("delay_eod") or 0)
        if not delay:
            return
        if self.eod_slots is None:
            await asyncio.sleep(delay)
            return
        t0 = time.monotonic()
        self.eod_queued += 1
        try:
            await self.eod_slots.acquire()
        finally:
            self.eod_queued -= 1
        try:
            waited = time.monotonic() - t0
            if waited >= 0.001:
                # How long the queue held this message before its slot.
                self.event("eod_queued", conn=conn, waited=round(waited, 6),
                           still_queued=self.eod_queued)
            await asyncio.sleep(delay)
        finally:
            self.eod_slots.release()

    # ---- events and control -------------------------------------------

    def event(self, ev, **kw):
        rec = {"ts": round(time.time(), 6), "ev": ev, "backend": self.name}
        rec.update(kw)
        self.events_file.write(json.dumps(rec) + "\n")

    def reload_control(self):
        if not self.control_path:
            return
        try:
            st = os.stat(self.control_path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            sig = None
        if sig == self.control_sig:
            return
        self.control_sig = sig
        data = {}
        if sig is not None:
            try:
                with open(self.control_path) as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                self.event("control_error", error=str(e))
                return
        self.control = data
        self.faults_fired = 0
        self.event("control", control=data)

    def opt(self, key):
        if key in self.control:
            return self.control[key]
        return self.flags[key]

    def fault(self, kind, **kw):
        """True (and counted, logged) when the counted fault may fire."""
        limit = self.opt("fault_limit")
        if limit is not None and self.faults_fired >= int(limit):
            return False
        self.faults_fired += 1
        self.event("fault", kind=kind, **kw)
        return True

    # ---- listening ----------------------------------------------------

    def bind(self):
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted
        # connections only then, and without it Nagle holds the second of
        # two pipelined replies for a delayed ACK (40 ms a transaction).
        s = socket.socket(socket.AF_INET6 if ":" in self.args.host else socket.AF_INET,
                          socket.SOCK_STREAM, socket.IPPROTO_TCP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.args.host, self.port))
        self.port = s.getsockname()[1]
        return s

    async def apply_refuse(self):
        refuse = bool(self.opt("refuse"))
        if refuse and self.server is not None:
            self.server.close()
            self.server = None
            self.bound_sock = self.bind()
            self.event("refusing", port=self.port)
        elif not refuse and self.server is None:
            if self.bound_sock is not None:
                self.bound_sock.close()
                self.bound_sock = None
            s = self.bind()
            s.listen(128)
            s.setblocking(False)
            if self.own_accept:
                self.server = AcceptLoop(self, s)
            else:
                self.server = await asyncio.start_server(self.session, sock=s, limit=READ_CHUNK)
            self.event("listening", port=self.port)

    async def run(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.reload_control()
        if self.opt("refuse"):
            self.bound_sock = self.bind()
            self.event("refusing", port=self.port)
        else:
            await self.apply_refuse()
        tmp = os.path.join(self.store, "ready.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"port": self.port, "pid": os.getpid(), "name": self.name}, f)
        os.rename(tmp, os.path.join(self.store, "ready.json"))
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
            self.reload_control()
            await self.apply_refuse()
        if self.server is not None:
            self.server.close()
        self.event("stopped")

    # ---- one session --------------------------------------------------

    async def session(self, reader, writer):
        self.conn_seq += 1
        self.active += 1
        s = Session(self, self.conn_seq, reader, writer)
        await self.serve(s, writer)

    async def serve(self, s, writer):
        try:
            await s.run()
        except (Closed, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                ssl.SSLError):
            pass
        finally:
            self.active -= 1
            self.event("disconnect", conn=s.conn, how=s.how)
            try:
                writer.close()
            except Exception:
                pass

    async def accepted(self, sock):
        """A connection from AcceptLoop: the PROXY header (--proxy-protocol)
        read off the raw socket, octet-exact, then the transport, with TLS
        from the first byte (--implicit-tls), then the session."""
        loop = asyncio.get_running_loop()
        self.conn_seq += 1
        self.active += 1
        conn = self.conn_seq
        try:
            p = sock.getpeername()
            peer = "%s:%d" % (p[0], p[1])
        except OSError:
            peer = "?"
        self.reload_control()
        self.event("connect", conn=conn, peer=peer, active=self.active)
        how = "closed"
        proxy = None
        served = False
        try:
            if self.args.proxy_protocol:
                got = bytearray()
                try:
                    proxy = await asyncio.wait_for(read_proxy_header(loop, sock, got),
                                                   self.args.proxy_timeout)
                except ProxyError as e:
                    self.event("proxy_error", conn=conn, error=str(e), data=text(bytes(got)))
                    how = "proxy_error"
                    return
                except asyncio.TimeoutError:
                    self.event("proxy_error", conn=conn, error="timeout", data=text(bytes(got)))
                    how = "proxy_timeout"
                    return
                except (ConnectionError, OSError):
                    how = "client_eof"
                    return
                self.event("proxy", conn=conn, **proxy)
            reader = asyncio.StreamReader(limit=READ_CHUNK)
            made = loop.create_future()

            def connected(r, w):
                if not made.done():
                    made.set_result(w)

            # client_connected_cb also makes StreamWriter.start_tls() server-side.
            protocol = asyncio.StreamReaderProtocol(reader, connected)
            ctx = self.tls_ctx if self.args.implicit_tls else None
            try:
                await loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=ctx,
                    ssl_handshake_timeout=self.args.idle_timeout if ctx else None)
            except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as e:
                self.event("tls_failed" if ctx else "accept_failed", conn=conn, error=repr(e))
                how = "tls_failed" if ctx else "accept_failed"
                return
            writer = await made
            s = Session(self, conn, reader, writer, proxy=proxy, announced=True)
            if ctx is not None:
                s.tls = tls_info(writer, implicit=True)
                self.event("tls", conn=conn, **s.tls)
            served = True  # serve() counts down and logs the disconnect
            await self.serve(s, writer)
        finally:
            if not served:
                self.active -= 1
                sock.close()
                self.event("disconnect", conn=conn, how=how)

    def spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def store_message(self, s, content):
        self.msg_seq += 1
        mid = "%s-%d-%d" % (self.name, os.getpid(), self.msg_seq)
        m = TEST_ID_RE.search(content)
        env = {
            "id": mid,
            "backend": self.name,
            "mail_from": s.mail_from,
            "mail_params": s.mail_params,
            "rcpts": list(s.rcpts),
            "helo": s.helo,
            "peer": s.peer,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "test_id": m.group(1).decode("latin-1") if m else None,
            "conn": s.conn,
            "ts": time.time(),
            "tls": s.tls is not None,
            "tls_version": s.tls["version"] if s.tls else None,
            "tls_cipher": s.tls["cipher"] if s.tls else None,
            "xclient": dict(s.xclient) if s.xclient is not None else None,
            "proxy": proxy_summary(s.proxy),
        }
        base = os.path.join(self.msgs, mid)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(content)
        os.rename(base + ".eml.tmp", base + ".eml")
        with open(base + ".json.tmp", "w") as f:
            json.dump(env, f)
        os.rename(base + ".json.tmp", base + ".json")
        self.event("stored", conn=s.conn, id=mid, size=len(content), test_id=env["test_id"],
                   rcpts=env["rcpts"], mail_from=s.mail_from)
        return mid


def text(b):
    return b.decode("utf-8", "backslashreplace")


class AcceptLoop:
    """A listening socket served by Backend.accepted (like asyncio's Server:
    close() stops accepting, sessions go on)."""

    def __init__(self, backend, sock):
        self.b = backend
        self.sock = sock
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as e:  # EMFILE and the like: back off, go on
                self.b.event("accept_error", error=repr(e))
                await asyncio.sleep(0.05)
                continue
            conn.setblocking(False)
            self.b.spawn(self.b.accepted(conn))

    def close(self):
        self.task.cancel()
        self.sock.close()


# ---- TLS ---------------------------------------------------------------


def make_tls_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.tls_cert, args.tls_key or None)

    def sni(sslobj, server_name, _ctx):
        # Recorded in the tls event: which name the client asked for.
        sslobj.fault_backend_sni = server_name

    ctx.sni_callback = sni
    return ctx


def tls_info(writer, implicit):
    obj = writer.get_extra_info("ssl_object")
    cipher = obj.cipher() if obj else None
    return {"version": obj.version() if obj else None,
            "cipher": cipher[0] if cipher else None,
            "implicit": implicit,
            "sni": getattr(obj, "fault_backend_sni", None)}


# ---- XCLIENT -----------------------------------------------------------


def xtext_decode(v):
    """RFC 3461 xtext -> str, or None when malformed: every octet "!".."~"
    but "+" and "=", or "+" and two upper-case hex digits."""
    out = bytearray()
    i = 0
    while i < len(v):
        c = v[i]
        if c == 0x2B:  # "+"
            h = v[i + 1:i + 3]
            if len(h) != 2 or any(x not in b"0123456789ABCDEF" for x in h):
                return None
            out.append(int(h, 16))
            i += 3
            continue
        if c < 0x21 or c > 0x7E or c == 0x3D:
            return None
        out.append(c)
        i += 1
    return out.decode("utf-8", "backslashreplace")


def xclient_value_error(name, value):
    """None when `value` (decoded) suits XCLIENT attribute `name`, else the
    501 reply."""
    if value.upper() in XCLIENT_SPECIAL:
        return None
    if name == "ADDR":
        try:
            if value.upper().startswith("IPV6:"):
                ipaddress.IPv6Address(value[5:])
            else:
                ipaddress.IPv4Address(value)
        except ValueError:
            return "501 5.5.4 Bad XCLIENT ADDR syntax: %s" % value
    elif name == "PORT":
        if not value.isdigit() or len(value) > 5 or int(value) > 65535 or \
                (len(value) > 1 and value[0] == "0"):
            return "501 5.5.4 Bad XCLIENT PORT syntax: %s" % value
    elif name == "PROTO":
        if value.upper() not in ("SMTP", "ESMTP"):
            return "501 5.5.4 Bad XCLIENT PROTO syntax: %s" % value
    elif not value:
        return "501 5.5.4 Bad XCLIENT %s syntax: empty" % name
    return None


# ---- PROXY protocol ----------------------------------------------------


class ProxyError(Exception):
    """A missing or malformed PROXY header."""


async def read_proxy_header(loop, sock, got):
    """Reads one PROXY v1 or v2 header off the raw socket, not an octet
    more (what follows may be a TLS ClientHello); returns it parsed.  `got`
    collects the octets read, for the error event."""

    async def take(n):
        while n > 0:
            chunk = await loop.sock_recv(sock, n)
            if not chunk:
                raise ProxyError("connection closed inside the PROXY header")
            got.extend(chunk)
            n -= len(chunk)

    await take(1)
    if got[:1] == b"P":
        # v1: octet by octet up to CR LF, at most 107 octets.
        while not got.endswith(b"\r\n"):
            if len(got) >= PROXY_V1_MAX:
                raise ProxyError("PROXY v1 line longer than 107 octets")
            await take(1)
        return parse_proxy_v1(bytes(got))
    if got[:1] == b"\r":
        await take(15)
        if bytes(got[:12]) != PROXY_V2_SIG:
            raise ProxyError("bad PROXY v2 signature")
        length = int.from_bytes(got[14:16], "big")
        if length:
            await take(length)
        return parse_proxy_v2(bytes(got))
    raise ProxyError("no PROXY header")


def _v1_port(p):
    if not p.isdigit() or len(p) > 5 or (len(p) > 1 and p[0] == "0") or int(p) > 65535:
        raise ProxyError("bad PROXY v1 port %r" % p)
    return int(p)


def parse_proxy_v1(line):
    if not line.startswith(b"PROXY ") or not line.endswith(b"\r\n"):
        raise ProxyError("bad PROXY v1 line")
    body = line[:-2]
    if b"\r" in body or b"\n" in body or b"\0" in body:
        raise ProxyError("bad PROXY v1 line")
    try:
        body = body.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyError("non-ASCII PROXY v1 line")
    parts = body.split(" ")
    base = {"version": 1, "command": "PROXY", "source": None, "source_port": None,
            "dest": None, "dest_port": None, "tlvs": []}
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return dict(base, family="UNKNOWN")
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError("bad PROXY v1 line %r" % body)
    cls = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    try:
        src, dst = cls(parts[2]), cls(parts[3])
    except ValueError:
        raise ProxyError("bad PROXY v1 address in %r" % body)
    return dict(base, family=parts[1], source=str(src), source_port=_v1_port(parts[4]),
                dest=str(dst), dest_port=_v1_port(parts[5]))


def parse_proxy_v2(h):
    ver_cmd, fam = h[12], h[13]
    length = int.from_bytes(h[14:16], "big")
    if ver_cmd >> 4 != 2:
        raise ProxyError("bad PROXY v2 version %d" % (ver_cmd >> 4))
    cmd = ver_cmd & 0x0F
    if cmd not in (0, 1):
        raise ProxyError("bad PROXY v2 command %d" % cmd)
    families = {0x00: ("UNSPEC", 0), 0x11: ("TCP4", 12), 0x12: ("UDP4", 12),
                0x21: ("TCP6", 36), 0x22: ("UDP6", 36), 0x31: ("UNIX", 216),
                0x32: ("UNIX_DGRAM", 216)}
    if fam not in families:
        raise ProxyError("bad PROXY v2 family 0x%02x" % fam)
    family, need = families[fam]
    if length < need:
        raise ProxyError("PROXY v2 length %d too short for %s" % (length, family))
    body = h[16:16 + length]
    out = {"version": 2, "command": "LOCAL" if cmd == 0 else "PROXY", "family": family,
           "source": None, "source_port": None, "dest": None, "dest_port": None, "tlvs": []}
    if cmd == 1 and family in ("TCP4", "UDP4"):
        out.update(source=str(ipaddress.IPv4Address(body[0:4])),
                   dest=str(ipaddress.IPv4Address(body[4:8])),
                   source_port=int.from_bytes(body[8:10], "big"),
                   dest_port=int.from_bytes(body[10:12], "big"))
    elif cmd == 1 and family in ("TCP6", "UDP6"):
        out.update(source=str(ipaddress.IPv6Address(body[0:16])),
                   dest=str(ipaddress.IPv6Address(body[16:32])),
                   source_port=int.from_bytes(body[32:34], "big"),
                   dest_port=int.from_bytes(body[34:36], "big"))
    elif cmd == 1 and family.startswith("UNIX"):
        out.update(source=body[0:108].split(b"\0", 1)[0].decode("utf-8", "backslashreplace"),
                   dest=body[108:216].split(b"\0", 1)[0].decode("utf-8", "backslashreplace"))
    rest = body[need:]
    while rest:
        if len(rest) < 3:
            raise ProxyError("truncated PROXY v2 TLV")
        t, n = rest[0], int.from_bytes(rest[1:3], "big")
        if len(rest) < 3 + n:
            raise ProxyError("PROXY v2 TLV 0x%02x overruns the header" % t)
        out["tlvs"].append([t, rest[3:3 + n].hex()])
        rest = rest[3 + n:]
    return out


def proxy_summary(p):
    if p is None:
        return None
    return {k: p[k] for k in ("version", "command", "family", "source", "source_port", "dest",
                              "dest_port")}


class Session:
    def __init__(self, backend, conn, reader, writer, proxy=None, announced=False):
        self.b = backend
        self.conn = conn
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = "%s:%d" % (peer[0], peer[1]) if peer else "?"
        self.buf = bytearray()
        self.helo = None
        self.how = "closed"
        self.announced = announced  # the connect event is already written
        self.tls = None             # tls_info() once TLS is on
        self.xclient = None         # XCLIENT attributes in effect, once one was accepted
        self.proxy = proxy          # the parsed PROXY header, if any
        self.pending_extra = None   # mail_extra: sent in front of the next reply
        self.reset()

    def reset(self):
        self.mail_from = None
        self.mail_params = []
        self.rcpts = []

    # -- I/O --

    async def fill(self, timeout):
        chunk = await asyncio.wait_for(self.reader.read(READ_CHUNK), timeout)
        if not chunk:
            self.how = "client_eof"
            raise Closed()
        self.buf += chunk
        return len(chunk)

    async def reply(self, line):
        # A configured reply holding LF is sent as several lines, as given:
        # that is how a test makes a malformed or multi-line reply.
        if self.pending_extra is not None and not line.startswith("250 2.1.0 Sender"):
            line = self.pending_extra + "\n" + line
            self.pending_extra = None
        line = line.replace("\r\n", "\n").replace("\n", "\r\n")
        # surrogateescape: a test writes a raw byte (0xff) as "\udcff".
        self.writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")
        await self.writer.drain()

    def drop(self, why):
        self.how = why
        self.writer.transport.abort()
        raise Closed()

    async def hang(self, step):
        """Stop answering: read and ignore until the peer closes."""
        self.how = "hang_" + step
        deadline = time.monotonic() + self.b.args.hang_timeout
        while time.monotonic() < deadline:
            self.buf.clear()
            left = deadline - time.monotonic()
            try:
                await self.fill(max(0.01, left))
            except asyncio.TimeoutError:
                break
        raise Closed()

    async def step_fault(self, step, reply_key=None):
        """Applies drop_at/hang/<reply_key> at `step`; returns a reply or None."""
        if self.b.opt("drop_at") == step and self.b.fault("drop", step=step, conn=self.conn):
            self.drop("drop_" + step)
        if self.b.opt("hang") == step and self.b.fault("hang", step=step, conn=self.conn):
            await self.hang(step)
        if reply_key:
            r = self.b.opt(reply_key)
            if r and self.b.fault(reply_key, step=step, conn=self.conn, reply=r):
                return r
        return None

    async def read_line(self):
        """One command line: bytes without CR LF, or None when too long."""
        too_long = False
        searched = 0
        while True:
            i = self.buf.find(b"\r\n", searched)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                if too_long or i + 2 > MAX_ENVELOPE_LINE:
                    return None
                return line
            searched = max(0, len(self.buf) - 1)
            if len(self.buf) > MAX_ENVELOPE_LINE:
                # Discard the rest of an over-long line up to its CR LF, so
                # that the dialog stays in step (RFC 5321 4.5.3.1.4).
                too_long = True
                keep = self.buf[-1:]
                self.buf = bytearray(keep)
                searched = 0
            await self.fill(self.b.args.idle_timeout)

    # -- the dialog --

    async def run(self):
        b = self.b
        if not self.announced:
            b.reload_control()
            b.event("connect", conn=self.conn, peer=self.peer, active=b.active)
        r = await self.step_fault("banner", "banner")
        if r:
            await self.reply(r)
            self.how = "banner_refused"
            return
        await self.reply("220 %s ESMTP fault_backend" % b.name)
        while True:
            line = await self.read_line()
            b.reload_control()
            if line is None:
                b.event("cmd", conn=self.conn, line=None, error="too_long")
                await self.reply("500 5.5.2 Line too long")
                continue
            b.event("cmd", conn=self.conn, line=text(line))
            if b"\r" in line or b"\n" in line or b"\0" in line:
                await self.reply("500 5.5.2 Bare CR, LF or NUL in command")
                continue
            verb, _, arg = line.partition(b" ")
            verb = verb.upper()
            handler = getattr(self, "cmd_" + verb.decode("latin-1").lower(), None)
            if not verb.isalpha() or handler is None:
                await self.reply("500 5.5.2 Command not recognized")
                continue
            # XCLIENT may be longer, as MAIL and RCPT (Postfix takes 2048).
            if verb not in (b"MAIL", b"RCPT") and len(line) + 2 > MAX_COMMAND_LINE and \
                    not (verb == b"XCLIENT" and self.offers_xclient()):
                await self.reply("500 5.5.2 Line too long")
                continue
            if await handler(arg) == "quit":
                return

    async def cmd_ehlo(self, arg, verb="EHLO"):
        if not arg.strip():
            await self.reply("501 5.5.4 %s needs a domain" % verb)
            return
        r = await self.step_fault("ehlo", "ehlo_reply")
        if r:
            await self.reply(r)
            return
        self.reset()
        self.helo = text(arg.strip())
        if verb == "HELO":
            await self.reply("250 %s" % self.b.name)
            return
        omit = {k.upper() for k in (self.b.opt("omit_ehlo") or [])}
        lines = [self.b.name]
        for k in EHLO_KEYWORDS:
            if k not in omit:
                lines.append("SIZE %d" % int(self.b.opt("max_size")) if k == "SIZE" else k)
        if self.offers_starttls():
            lines.append("STARTTLS")
        if self.offers_xclient():
            lines.append("XCLIENT " + " ".join(XCLIENT_ATTRS))
        out = ["250-" + l for l in lines[:-1]] + ["250 " + lines[-1]]
        self.writer.write(("\r\n".join(out) + "\r\n").encode())
        await self.writer.drain()

    async def cmd_helo(self, arg):
        await self.cmd_ehlo(arg, verb="HELO")

    def advertised(self, keyword):
        return keyword not in {k.upper() for k in (self.b.opt("omit_ehlo") or [])}

    def offers_starttls(self):
        return (self.b.tls_ctx is not None and not self.b.args.implicit_tls
                and self.tls is None and self.advertised("STARTTLS")
                and not self.b.opt("omit_starttls"))

    def offers_xclient(self):
        return bool(self.b.args.xclient) and self.advertised("XCLIENT")

    async def cmd_starttls(self, arg):
        if not self.offers_starttls():
            if self.tls is not None and self.b.tls_ctx is not None:
                await self.reply("503 5.5.1 TLS already active")
            else:
                await self.reply("500 5.5.2 Command not recognized")
            return
        if arg:
            await self.reply("501 5.5.4 Syntax: STARTTLS")
            return
        if self.mail_from is not None:
            await self.reply("503 5.5.1 STARTTLS inside a mail transaction")
            return
        r = self.b.opt("starttls_reply")
        if r and self.b.fault("starttls_reply", conn=self.conn, reply=r):
            await self.reply(r)
            return
        # RFC 3207 4.2 / CVE-2011-0411: nothing the client sent before the
        # handshake may count as sent over TLS.  What the stream reader
        # holds beyond our buffer is taken too (it would otherwise be read
        # as if decrypted).
        pending = bytes(self.buf)
        rb = getattr(self.reader, "_buffer", None)
        if rb:
            pending += bytes(rb)
            rb.clear()
        self.buf.clear()
        if pending:
            self.b.event("starttls_pipelined", conn=self.conn, data=text(pending[:1000]),
                         size=len(pending))
        out = "220 2.0.0 Ready to start TLS"
        inject = self.b.opt("starttls_inject")
        if inject and self.b.fault("starttls_inject", conn=self.conn, inject=inject):
            out += "\n" + inject
        # reply() does not yield before its drain, and start_tls() pauses
        # reading before it yields: no client octet can slip into the
        # plain-text reader between the 220 and the handshake.
        line = out.replace("\r\n", "\n").replace("\n", "\r\n")
        self.writer.write(line.encode("utf-8") + b"\r\n")
        try:
            await self.writer.start_tls(self.b.tls_ctx,
                                        ssl_handshake_timeout=self.b.args.idle_timeout)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as e:
            self.b.event("tls_failed", conn=self.conn, error=repr(e))
            self.how = "tls_failed"
            raise Closed()
        self.tls = tls_info(self.writer, implicit=False)
        self.b.event("tls", conn=self.conn, **self.tls)
        # RFC 3207 4.2: forget everything learnt before TLS.
        self.helo = None
        self.reset()

    async def cmd_xclient(self, arg):
        if not self.offers_xclient():
            await self.reply("500 5.5.2 Command not recognized")
            return
        if self.mail_from is not None:
            await self.reply("503 5.5.1 Error: MAIL transaction in progress")
            return
        items = arg.split(b" ")
        if not arg or any(not i for i in items):
            await self.reply("501 5.5.4 Syntax: XCLIENT attribute=value...")
            return
        attrs = {}
        for item in items:
            name, eq, raw = item.partition(b"=")
            name = name.decode("latin-1").upper()
            if not eq:
                await self.reply("501 5.5.4 Syntax: XCLIENT attribute=value...")
                return
            if name not in XCLIENT_ATTRS:
                await self.reply("501 5.5.4 Bad XCLIENT attribute name: %s" % name)
                return
            value = xtext_decode(raw)
            if value is None:
                await self.reply("501 5.5.4 Bad XCLIENT attribute value: %s" % text(raw))
                return
            err = xclient_value_error(name, value)
            if err:
                await self.reply(err)
                return
            attrs[name] = value
        r = self.b.opt("xclient_reply")
        if r and self.b.fault("xclient_reply", conn=self.conn, reply=r):
            self.b.event("xclient_refused", conn=self.conn, attrs=attrs, reply=r)
            await self.reply(r)
            return
        self.xclient = dict(self.xclient or {}, **attrs)
        self.b.event("xclient", conn=self.conn, attrs=attrs, in_effect=dict(self.xclient),
                     line=text(arg))
        # As Postfix: back to the greeting; the client must EHLO again.
        self.helo = None
        self.reset()
        await self.reply("220 %s ESMTP fault_backend" % self.b.name)

    def params(self, rest, allowed):
        """ESMTP parameters -> (list, error reply or None)."""
        out = []
        for p in rest.split():
            name, eq, value = p.partition(b"=")
            name = name.upper().decode("latin-1")
            if name not in allowed:
                return out, "555 5.5.4 Unsupported parameter %s" % name
            if name == "SIZE" and (not value.isdigit() or len(value) > 20):
                return out, "501 5.5.4 Bad SIZE value"
            if name == "BODY" and value.upper() not in (b"7BIT", b"8BITMIME"):
                return out, "501 5.5.4 Bad BODY value"
            out.append(text(p))
        return out, None

    async def cmd_mail(self, arg):
        if self.helo is None:
            await self.reply("503 5.5.1 Send EHLO first")
            return
        if self.mail_from is not None:
            await self.reply("503 5.5.1 Nested MAIL command")
            return
        if self.b.opt("require_tls") and self.tls is None:
            await self.reply("530 5.7.0 Must issue a STARTTLS command first")
            return
        m = PATH_RE.match(arg)
        if not m or m.group(1).upper() != b"FROM":
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        allowed = set()
        if self.advertised("SIZE"):
            allowed.add("SIZE")
        if self.advertised("8BITMIME"):
            allowed.add("BODY")
        if self.advertised("SMTPUTF8"):
            allowed.add("SMTPUTF8")
        params, err = self.params(m.group(3), allowed)
        if err:
            await self.reply(err)
            return
        for p in params:
            if p.upper().startswith("SIZE=") and int(p[5:]) > int(self.b.opt("max_size")):
                await self.reply("552 5.3.4 Message size exceeds fixed limit")
                return
        r = await self.step_fault("mail", "mail_reply")
        if r:
            await self.reply(r)
            return
        self.mail_from = text(m.group(2))
        self.mail_params = params
        extra = self.b.opt("mail_extra")
        if extra and self.b.fault("mail_extra", conn=self.conn, extra=extra):
            # One more reply, written with the next one: every later reply
            # answers the command before it (SECURITY.md 8).
            self.pending_extra = extra
        await self.reply("250 2.1.0 Sender <%s> ok" % self.mail_from)

    async def cmd_rcpt(self, arg):
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL before RCPT")
            return
        m = PATH_RE.match(arg)
        if not m or m.group(1).upper() != b"TO":
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        params, err = self.params(m.group(3), set())
        if err:
            await self.reply(err)
            return
        addr = text(m.group(2))
        await self.step_fault("rcpt")
        if len(self.rcpts) >= MAX_RECIPIENTS:
            await self.reply("452 4.5.3 Too many recipients")
            return
        per = {k.lower(): v for k, v in (self.b.opt("rcpt_replies") or {}).items()}
        if addr.lower() in per:
            r = per[addr.lower()]
            if r in ("drop", "hang"):
                self.b.event("fault", kind="rcpt_" + r, rcpt=addr, conn=self.conn)
                if r == "drop":
                    self.drop("drop_rcpt")
                await self.hang("rcpt")
            self.b.event("rcpt_refused", conn=self.conn, rcpt=addr, reply=r)
            await self.reply(r)
            if r.startswith("2"):
                self.rcpts.append(addr)
            return
        pat = self.b.opt("reject_rcpt_pattern")
        if pat and re.search(pat, addr):
            self.b.event("rcpt_refused", conn=self.conn, rcpt=addr, reply="550 5.1.1")
            await self.reply("550 5.1.1 <%s> no such user here" % addr)
            return
        self.rcpts.append(addr)
        ok = self.b.opt("rcpt_ok_reply")
        await self.reply(ok or "250 2.1.5 Recipient <%s> ok at %s" % (addr, self.b.name))

    async def cmd_data(self, arg):
        if arg:
            await self.reply("501 5.5.4 DATA takes no argument")
            return
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL before DATA")
            return
        if not self.rcpts:
            await self.reply("554 5.5.1 No valid recipients")
            return
        r = await self.step_fault("data", "data_reply")
        if r:
            await self.reply(r)
            if not r.startswith("3"):
                return
        extra = self.b.opt("data_extra")
        if extra and self.b.fault("data_extra", conn=self.conn, extra=extra):
            # An unsolicited reply behind the 354: in the same write, or
            # data_extra_delay seconds later, while the data comes in.
            delay = float(self.b.opt("data_extra_delay") or 0)
            if not delay:
                await self.reply("354 End data with <CR><LF>.<CR><LF>\n" + extra)
            else:
                await self.reply("354 End data with <CR><LF>.<CR><LF>")

                async def later():
                    await asyncio.sleep(delay)
                    await self.reply(extra)
                    self.b.event("data_extra_sent", conn=self.conn)
                self.b.spawn(later())
        else:
            await self.reply("354 End data with <CR><LF>.<CR><LF>")
        if self.b.opt("hang") == "body" and self.b.fault("hang", step="body", conn=self.conn):
            # Read nothing more: TCP flow control stalls the sender.
            self.how = "hang_body"
            self.writer.transport.pause_reading()
            await asyncio.sleep(self.b.args.hang_timeout)
            raise Closed()
        content = await self.read_data()
        if content is None:
            return
        r = await self.step_fault("eod", "eod_reply")
        if r:
            self.b.event("eod_refused", conn=self.conn, reply=r)
            await self.b.eod_delay(self.conn)
            await self.reply(r)
            self.reset()
            return
        # A real MTA commits what it took even when the client left.
        await self.b.eod_delay(self.conn)
        if len(content) > int(self.b.opt("max_size")):
            await self.reply("552 5.3.4 Message size exceeds fixed limit")
            self.reset()
            return
        mid = self.b.store_message(self, content)
        self.reset()
        extra = self.b.opt("eod_extra")
        if extra and self.b.fault("eod_extra", conn=self.conn, extra=extra):
            # An unsolicited reply behind the 250 (SECURITY.md 8): in the
            # same write, or eod_extra_delay seconds later (the peer's
            # session is idle then).
            delay = float(self.b.opt("eod_extra_delay") or 0)
            if not delay:
                await self.reply("250 2.0.0 Ok: queued as %s\n%s" % (mid, extra))
            else:
                await self.reply("250 2.0.0 Ok: queued as %s" % mid)
                await asyncio.sleep(delay)
                await self.reply(extra)
            self.b.event("eod_extra_sent", conn=self.conn)
            return
        await self.reply("250 2.0.0 Ok: queued as %s" % mid)

    async def read_data(self):
        """Reads the DATA stream to CR LF . CR LF; the unstuffed content, or
        None when the connection was dropped on purpose."""
        drop_after = self.b.opt("drop_data_after")
        counted = drop_after is not None and drop_after != "eod"
        if counted and int(drop_after) == 0 and self.b.fault("drop_data_after", after=0,
                                                              conn=self.conn):
            self.drop("drop_after_354")
        limit_ok = counted
        received = len(self.buf)
        searched = 0
        while True:
            if limit_ok and received >= int(drop_after):
                if self.b.fault("drop_data_after", after=int(drop_after), conn=self.conn,
                                received=received):
                    self.drop("drop_in_data")
                limit_ok = False
            end = self.find_end(searched)
            if end is not None:
                break
            searched = max(0, len(self.buf) - 4)
            try:
                n = await self.fill(self.b.args.idle_timeout)
            except Closed:
                self.b.event("data_aborted", conn=self.conn, received=received)
                self.how = "client_eof_in_data"
                raise
            received += n
        body_end, rest_start = end
        raw = bytes(self.buf[:body_end])
        del self.buf[:rest_start]
        content = (b"\r\n" + raw).replace(b"\r\n.", b"\r\n")[2:] if raw else b""
        self.check_content(content)
        if drop_after == "eod" and self.b.fault("drop_data_after", after="eod", conn=self.conn):
            self.drop("drop_after_final_dot")
        return content

    def find_end(self, searched):
        """(end of content, start of what follows) or None."""
        if self.buf.startswith(b".\r\n"):
            return 0, 3
        i = self.buf.find(b"\r\n.\r\n", searched)
        if i < 0:
            return None
        return i + 2, i + 5

    def check_content(self, content):
        crlf = content.count(b"\r\n")
        if content.count(b"\r") != crlf or content.count(b"\n") != crlf:
            self.b.event("data_bare_line_ending", conn=self.conn)
        longest = max((len(l) for l in content.split(b"\r\n")), default=0)
        if longest + 2 > MAX_TEXT_LINE:
            self.b.event("data_long_line", conn=self.conn, length=longest)

    async def cmd_rset(self, arg):
        self.reset()
        await self.reply("250 2.0.0 Reset")

    async def cmd_noop(self, arg):
        await self.reply("250 2.0.0 Ok")

    async def cmd_vrfy(self, arg):
        await self.reply("252 2.5.0 Cannot VRFY")

    async def cmd_help(self, arg):
        await self.reply("214 2.0.0 fault_backend")

    async def cmd_quit(self, arg):
        await self.reply("221 2.0.0 Bye")
        self.how = "quit"
        return "quit"


def flag_faults(a):
    f = {}
    for key in ("banner", "ehlo_reply", "mail_reply", "data_reply", "eod_reply", "eod_extra",
                "mail_extra", "data_extra", "drop_at", "hang", "reject_rcpt_pattern"):
        if getattr(a, key) is not None:
            f[key] = getattr(a, key)
    if a.refuse:
        f["refuse"] = True
    if a.rcpt_reply:
        f["rcpt_replies"] = dict(x.split("=", 1) for x in a.rcpt_reply)
    if a.drop_data_after is not None:
        f["drop_data_after"] = "eod" if a.drop_data_after == "eod" else int(a.drop_data_after)
    if a.delay_eod:
        f["delay_eod"] = a.delay_eod
    if a.eod_extra_delay:
        f["eod_extra_delay"] = a.eod_extra_delay
    if a.data_extra_delay:
        f["data_extra_delay"] = a.data_extra_delay
    if a.fault_limit is not None:
        f["fault_limit"] = a.fault_limit
    if a.omit_ehlo:
        f["omit_ehlo"] = a.omit_ehlo
    if a.max_size is not None:
        f["max_size"] = a.max_size
    for key in ("starttls_reply", "starttls_inject", "xclient_reply"):
        if getattr(a, key) is not None:
            f[key] = getattr(a, key)
    if a.require_tls:
        f["require_tls"] = True
    if a.omit_starttls:
        f["omit_starttls"] = True
    return f


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", default="backend")
    p.add_argument("--control")
    p.add_argument("--refuse", action="store_true")
    p.add_argument("--banner")
    p.add_argument("--ehlo-reply", dest="ehlo_reply")
    p.add_argument("--mail-reply", dest="mail_reply")
    p.add_argument("--rcpt-reply", dest="rcpt_reply", action="append", metavar="ADDR=REPLY")
    p.add_argument("--reject-rcpt-pattern", dest="reject_rcpt_pattern")
    p.add_argument("--data-reply", dest="data_reply")
    p.add_argument("--eod-reply", dest="eod_reply")
    p.add_argument("--drop-at", dest="drop_at", choices=STEPS[:5])
    p.add_argument("--drop-data-after", dest="drop_data_after")
    p.add_argument("--hang", choices=STEPS)
    p.add_argument("--delay-eod", dest="delay_eod", type=float, default=0.0)
    p.add_argument("--eod-capacity", dest="eod_capacity", type=int, default=0,
                   help="end-of-data delays served at once, FIFO (0: unlimited)")
    p.add_argument("--eod-extra", dest="eod_extra")
    p.add_argument("--eod-extra-delay", dest="eod_extra_delay", type=float, default=0.0)
    p.add_argument("--mail-extra", dest="mail_extra")
    p.add_argument("--data-extra", dest="data_extra")
    p.add_argument("--data-extra-delay", dest="data_extra_delay", type=float, default=0.0)
    p.add_argument("--fault-limit", dest="fault_limit", type=int)
    p.add_argument("--omit-ehlo", dest="omit_ehlo", action="append")
    p.add_argument("--max-size", dest="max_size", type=int)
    p.add_argument("--idle-timeout", dest="idle_timeout", type=float, default=120.0)
    p.add_argument("--hang-timeout", dest="hang_timeout", type=float, default=600.0)
    p.add_argument("--tls-cert", dest="tls_cert")
    p.add_argument("--tls-key", dest="tls_key")
    p.add_argument("--implicit-tls", dest="implicit_tls", action="store_true")
    p.add_argument("--require-tls", dest="require_tls", action="store_true")
    p.add_argument("--starttls-reply", dest="starttls_reply")
    p.add_argument("--starttls-inject", dest="starttls_inject")
    p.add_argument("--omit-starttls", dest="omit_starttls", action="store_true")
    p.add_argument("--xclient", action="store_true")
    p.add_argument("--xclient-reply", dest="xclient_reply")
    p.add_argument("--proxy-protocol", dest="proxy_protocol", action="store_true")
    p.add_argument("--proxy-timeout", dest="proxy_timeout", type=float, default=5.0)
    args = p.parse_args()
    if args.implicit_tls and not args.tls_cert:
        p.error("--implicit-tls needs --tls-cert")
    if args.tls_key and not args.tls_cert:
        p.error("--tls-key needs --tls-cert")
    if not ipaddress.ip_address(args.host).is_loopback:
        p.error("--host must be a loopback address")
    if args.drop_data_after not in (None, "eod") and not args.drop_data_after.isdigit():
        p.error("--drop-data-after takes a number of octets or `eod`")
    if args.eod_capacity < 0:
        p.error("--eod-capacity must not be negative")
    asyncio.run(Backend(args).run())


if __name__ == "__main__":
    sys.exit(main())
