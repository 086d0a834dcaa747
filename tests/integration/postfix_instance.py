"""postfix_instance.py: a private, throw-away Postfix for integration tests.

A real Postfix smtpd is the reference peer for what smtplb passes on about
its clients: XCLIENT (Postfix's own extension), the PROXY protocol
(`smtpd_upstream_proxy_protocol = haproxy`, v1 and v2) and STARTTLS.  This
module runs one in a directory of its own and lets a test read, per message,
which client Postfix saw.  Python 3 standard library only; loopback only.

    from postfix_instance import PostfixInstance, postfix_for, skip_reason
    pf = postfix_for(self, certs=certs)     # in an IntegrationCase: skips,
                                            # starts, stops at cleanup; or:
    if skip_reason(): self.skipTest(skip_reason())
    pf = PostfixInstance(workdir, certs=tls_certs.make_certs(...)).start()
    ... send to pf.port (XCLIENT allowed from 127.0.0.0/8, STARTTLS offered)
    ... or to pf.proxy_port (a PROXY v1/v2 header is required first)
    m = pf.wait_message("test-id-1")      # PostfixMessage
    m.client_addr == "192.0.2.7"; m.tls; m.service ("plain" or "proxy")
    pf.stop()
    # Extra main.cf settings, e.g. TLS required:
    PostfixInstance(workdir, certs=c, main_cf={"smtpd_tls_security_level": "encrypt"})

The instance (all under `<workdir>/postfix-<name>/`):
  config/   main.cf and master.cf (config_directory and meta_directory)
  queue/    queue_directory (the master's pid file is queue/pid/master.pid)
  data/     data_directory
  mail/     delivered mail: virtual(8) puts every message for `domains` in
            the Maildir mail/maildir/ (new/ holds one file a message), as
            uid/gid nobody
  maillog   maillog_file, written by postlogd (nothing goes to syslog)
It never reads or writes /etc/postfix (meta_directory is the private
config/ too) and runs no postfix-script: the queue directories are made here
and master(8) is started directly, in its own session, as a child of the
test; stop() sends SIGTERM, waits for master to exit, then SIGKILLs what
is left of its process group (kill() does only the latter).

Two smtpd services listen on 127.0.0.1: `port` (plain SMTP with STARTTLS
when certs are given, `smtpd_authorized_xclient_hosts = 127.0.0.0/8`) and
`proxy_port` (the same with `smtpd_upstream_proxy_protocol = haproxy`: no
220 until a PROXY header arrived, then the header's source is the client).
Each service has its own syslog_name (postfix/smtpd-plain/..., postfix/
smtpd-proxy/...), so the log tells which one took a message; so does
PostfixMessage.service.  Mail is accepted for `domains` (the harness's
local domains by default) from anyone; any other recipient is refused at
RCPT, never queued: 554 5.7.1 relay access denied for clients outside
mynetworks (127.0.0.0/8; XCLIENT or PROXY addresses elsewhere are
outside), 550 5.1.1 from inside (default_transport = error): nothing
leaves the machine.

Readiness is polled (both ports accept and a banner arrives on `port`),
never slept for; every wait has a deadline.  Those probes show in the
maillog as connections from 127.0.0.1 that sent nothing (and a "haproxy
read: EOF" warning); count messages, not connections.

Client helpers for PROXY tests (against this Postfix, fault_backend.py
--proxy-protocol or smtplb): proxy_v1_header(), proxy_v2_header(), and
ProxySMTP / ProxySMTP_SSL, smtplib clients that send a given header first.
"""

import dataclasses
import functools
import grp
import ipaddress
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
DEFAULT_DOMAINS = ("example.com", "example.org")
DEFAULT_HOSTNAME = "postfix.test.example"


def _find(name, dirs=("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")):
    for d in dirs:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


POSTCONF = _find("postconf")


def _daemon_directory():
    if not POSTCONF:
        return None
    try:
        out = subprocess.run([POSTCONF, "-dh", "daemon_directory"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=20).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


DAEMON_DIR = _daemon_directory()
MASTER = os.path.join(DAEMON_DIR, "master") if DAEMON_DIR else None


def postfix_version():
    """"3.7.11" or None."""
    if not POSTCONF:
        return None
    try:
        out = subprocess.run([POSTCONF, "-dh", "mail_version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=20).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


@functools.lru_cache(maxsize=None)
def skip_reason():
    """Why a private Postfix cannot run here, or None when it can (cached)."""
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (master(8) runs as root)"
    if not POSTCONF or not MASTER or not os.access(MASTER, os.X_OK):
        return "Postfix is not installed (postconf or master(8) missing)"
    for d in ("smtpd", "cleanup", "qmgr", "virtual", "postlogd", "trivial-rewrite"):
        if not os.access(os.path.join(DAEMON_DIR, d), os.X_OK):
            return "Postfix daemon %s is missing from %s" % (d, DAEMON_DIR)
    v = postfix_version() or "0"
    try:
        major, minor = (int(x) for x in v.split(".")[:2])
    except ValueError:
        major = minor = 0
    if (major, minor) < (3, 5):
        return "Postfix %s is too old (3.5 or later: maillog_file, PROXY v2)" % v
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or the postdrop group does not exist"
    return None


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait(predicate, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def _banner(port, timeout=1.0):
    """The first line the server sends, or None."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return data.split(b"\r\n")[0].decode("latin-1") if data else None
    except OSError:
        return None


def _accepts(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# Received: from HELO (NAME [ADDR])  -- or (NAME [ADDR]) with no HELO,
#   ... by HOST (Postfix) with PROTO id QUEUEID ...
_RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+)?\s*"
    r"\((?P<name>[^\s\[\]()]+) \[(?P<addr>[^\]]+)\](?::(?P<port>\d+))?\)"
    r"(?P<mid>.*?)\bby (?P<by>\S+) \(Postfix\) with (?P<proto>\S+) id (?P<qid>\w+)",
    re.IGNORECASE | re.DOTALL)
_TEST_ID_RE = re.compile(rb"^X-Test-Id:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
# postfix/smtpd-plain/smtpd[123]: 4Xabc: client=unknown[192.0.2.7]
_CLIENT_LOG_RE = re.compile(
    r"postfix/smtpd-(?P<service>\w+)/smtpd\[\d+\]: (?P<qid>\w+): client=(?P<name>[^\[\s]*)"
    r"\[(?P<addr>[^\]]+)\](?::(?P<port>\d+))?(?P<rest>.*)$")


def _bare_addr(a):
    return a[5:] if a.upper().startswith("IPV6:") else a


@dataclasses.dataclass
class PostfixMessage:
    """One delivered message, as Postfix saw its client."""
    path: str                 # the Maildir file
    data: bytes               # the whole file (Return-Path, Delivered-To, Received, ...)
    queue_id: str             # Postfix queue id (from its Received: field)
    helo: str                 # the HELO/EHLO name Postfix recorded (None if none)
    client_name: str          # "unknown" when Postfix had no name
    client_addr: str          # the client address Postfix saw (XCLIENT/PROXY applied),
                              # bare: "192.0.2.7", "2001:db8::7" (no "IPv6:")
    protocol: str             # "ESMTP", "ESMTPS" (TLS), "SMTP", ...
    tls: bool                 # Postfix received it over TLS
    test_id: str              # the X-Test-Id header, or None
    service: str              # "plain" or "proxy": which smtpd took it (from the log)
    log: dict                 # the smtpd "QUEUEID: client=..." log line, parsed, or {}


class PostfixInstance:
    """A private Postfix; see the module docstring.  Usable as a context
    manager (start on enter, stop on exit)."""

    def __init__(self, workdir, name="postfix", domains=DEFAULT_DOMAINS, certs=None,
                 port=None, proxy_port=None, hostname=DEFAULT_HOSTNAME, main_cf=None,
                 xclient_hosts="127.0.0.0/8", mynetworks="127.0.0.0/8"):
        """workdir: an existing directory (a test's work directory); the
        instance lives in workdir/postfix-<name>.  certs: a tls_certs.TlsCerts
        (server_cert/server_key are used) or None for no STARTTLS.  main_cf:
        extra main.cf settings {name: value}, applied last."""
        self.name = name
        self.dir = os.path.join(os.path.abspath(workdir), "postfix-" + name)
        self.config_dir = os.path.join(self.dir, "config")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.mail_dir = os.path.join(self.dir, "mail")
        self.maildir = os.path.join(self.mail_dir, "maildir")
        self.maillog = os.path.join(self.dir, "maillog")
        self.stderr_log = os.path.join(self.dir, "master.stderr")
        self.domains = tuple(domains)
        self.certs = certs
        self.hostname = hostname
        self.port = port or free_port()
        self.proxy_port = proxy_port or free_port()
        self.main_cf_extra = dict(main_cf or {})
        self.xclient_hosts = xclient_hosts
        self.mynetworks = mynetworks
        self.proc = None
        self._stopped = False
        self._log = None

    @property
    def address(self):
        """"127.0.0.1:PORT" of the plain (XCLIENT, STARTTLS) smtpd."""
        return "%s:%d" % (HOST, self.port)

    @property
    def proxy_address(self):
        """"127.0.0.1:PORT" of the smtpd that wants a PROXY header."""
        return "%s:%d" % (HOST, self.proxy_port)

    # ---- configuration ------------------------------------------------

    def _main_cf(self):
        pw = pwd.getpwnam("nobody")
        settings = [
            ("compatibility_level", "3.6"),
            ("meta_directory", self.config_dir),
            ("queue_directory", self.queue_dir),
            ("data_directory", self.data_dir),
            ("daemon_directory", DAEMON_DIR),
            ("command_directory", os.path.dirname(POSTCONF)),
            ("mail_owner", "postfix"),
            ("setgid_group", "postdrop"),
            ("myhostname", self.hostname),
            ("mydomain", "test.example"),
            ("myorigin", "$myhostname"),
            ("mydestination", ""),
            ("inet_interfaces", HOST),
            ("inet_protocols", "all"),  # IPv6 client addresses via XCLIENT/PROXY too
            ("mynetworks", self.mynetworks),
            ("smtpd_authorized_xclient_hosts", self.xclient_hosts),
            ("smtpd_banner", "$myhostname ESMTP Postfix"),
            ("smtpd_peername_lookup", "no"),
            ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"),
            ("maillog_file", self.maillog),
            ("maillog_file_prefixes", self.dir),
            ("alias_maps", ""),
            ("alias_database", ""),
            ("local_recipient_maps", ""),
            ("biff", "no"),
            ("append_dot_mydomain", "no"),
            ("virtual_mailbox_domains", " ".join(self.domains)),
            ("virtual_mailbox_base", self.mail_dir),
            ("virtual_mailbox_maps", "static:maildir/"),
            ("virtual_uid_maps", "static:%d" % pw.pw_uid),
            ("virtual_gid_maps", "static:%d" % pw.pw_gid),
            ("virtual_minimum_uid", "100"),
            ("default_transport", "error:no mail leaves this test instance"),
            ("relay_transport", "error:no mail leaves this test instance"),
            ("default_process_limit", "20"),
            ("delay_warning_time", "0"),
            ("queue_run_delay", "300s"),
            ("smtpd_client_connection_count_limit", "0"),
            ("smtpd_client_connection_rate_limit", "0"),
            ("smtpd_tls_received_header", "yes"),
            ("smtpd_tls_loglevel", "1"),
            ("shlib_directory", "/usr/lib/postfix"),
        ]
        if self.certs is not None:
            settings += [
                ("smtpd_tls_cert_file", self.certs.server_cert),
                ("smtpd_tls_key_file", self.certs.server_key),
                ("smtpd_tls_security_level", "may"),
            ]
        else:
            settings += [("smtpd_tls_security_level", "none")]
        out = dict(settings)
        out.update(self.main_cf_extra)
        return "".join("%s = %s\n" % kv for kv in out.items())

    def _master_cf(self):
        rows = [
            # service type private unpriv chroot wakeup maxproc command
            "%s:%d inet n - n - - smtpd\n  -o syslog_name=postfix/smtpd-plain"
            % (HOST, self.port),
            "%s:%d inet n - n - - smtpd\n  -o syslog_name=postfix/smtpd-proxy\n"
            "  -o smtpd_upstream_proxy_protocol=haproxy" % (HOST, self.proxy_port),
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(rows) + "\n"

    def _make_dirs(self):
        """What `post-install create-missing` would make, by hand (no
        postfix-script, nothing read from /etc/postfix)."""
        pf = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        nobody = pwd.getpwnam("nobody")
        # Postfix daemons run as `postfix` and must reach the queue, the
        # certificates and the mailbox base: every parent directory needs
        # search permission for others.
        d = self.dir
        os.makedirs(d, exist_ok=True)
        parent = os.path.dirname(d)
        while parent and parent != "/":
            st = os.stat(parent)
            if not st.st_mode & 0o001:
                if st.st_uid != os.geteuid():
                    raise RuntimeError("%s is not searchable by the postfix user" % parent)
                os.chmod(parent, (st.st_mode & 0o7777) | 0o011)
            parent = os.path.dirname(parent)
        os.chmod(d, 0o755)

        def mk(path, mode, uid=0, gid=0):
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)

        mk(self.config_dir, 0o755)
        mk(self.queue_dir, 0o755)
        for sub in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                    "incoming", "private", "saved", "trace"):
            mk(os.path.join(self.queue_dir, sub), 0o700, pf.pw_uid, pf.pw_gid)
        mk(os.path.join(self.queue_dir, "maildrop"), 0o730, pf.pw_uid, postdrop)
        mk(os.path.join(self.queue_dir, "public"), 0o710, pf.pw_uid, postdrop)
        mk(os.path.join(self.queue_dir, "pid"), 0o755)
        mk(self.data_dir, 0o700, pf.pw_uid, pf.pw_gid)
        mk(self.mail_dir, 0o755, nobody.pw_uid, nobody.pw_gid)
        if self.certs is not None:
            for f in (self.certs.server_cert, self.certs.server_key):
                if not os.path.exists(f):
                    raise FileNotFoundError(f)

    def write_config(self):
        self._make_dirs()
        for name, text in (("main.cf", self._main_cf()), ("master.cf", self._master_cf()),
                           ("dynamicmaps.cf", "")):
            tmp = os.path.join(self.config_dir, name + ".tmp")
            with open(tmp, "w") as f:
                f.write(text)
            # Postfix re-reads a configuration file whose time stamp is not
            # yet in the past (it might be half-written) and sleeps 300 ms
            # between tries, two seconds in all: date it back.
            past = time.time() - 60
            os.utime(tmp, (past, past))
            os.rename(tmp, os.path.join(self.config_dir, name))
        os.makedirs(os.path.join(self.config_dir, "dynamicmaps.cf.d"), exist_ok=True)

    def postconf(self, *args):
        """Runs postconf -c on this instance's configuration; its output."""
        p = subprocess.run([POSTCONF, "-c", self.config_dir] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        return p.stdout.decode("utf-8", "replace")

    # ---- running ------------------------------------------------------

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=30):
        """Writes the configuration, starts master(8) and waits until both
        smtpd ports accept and `port` greets with 220.  Returns self."""
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        if self.alive():
            return self
        self.write_config()
        env = dict(os.environ, MAIL_CONFIG=self.config_dir)
        self._log = open(self.stderr_log, "ab")
        self._stopped = False
        # Its own session (start_new_session): master and every daemon it
        # forks share one process group that kill() can take down at once.
        self.proc = subprocess.Popen([MASTER, "-c", self.config_dir], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.queue_dir, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("Postfix master exited with %s at start:\n%s"
                                   % (self.proc.returncode, self.debug_tail()))
            if not (_accepts(self.proxy_port) and _accepts(self.port)):
                return False
            b = _banner(self.port)
            return b is not None and b.startswith("220 ")

        try:
            _wait(ready, timeout, "Postfix on ports %d and %d" % (self.port, self.proxy_port),
                  interval=0.05)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout=15):
        """SIGTERM to master (which stops its children), waits for it;
        SIGKILL to the process group when it takes longer than `timeout`.
        Returns master's exit status (-15: it ended on the SIGTERM, as it
        does; None if it had to be killed)."""
        if self.proc is None or self._stopped:
            return self.proc.returncode if self.proc else None
        rc = None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                rc = None
        else:
            rc = self.proc.returncode
        self.kill()
        return rc

    def kill(self):
        """SIGKILL to master's whole process group (daemons included)."""
        if self.proc is None or self._stopped:
            return
        self._stopped = True  # never signal that process group id again
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- what it saw --------------------------------------------------

    def log_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern=None):
        rx = re.compile(pattern) if pattern else None
        return [l for l in self.log_text().splitlines() if rx is None or rx.search(l)]

    def wait_log(self, pattern, timeout=10):
        """The first maillog line matching the regular expression `pattern`
        (polled until `timeout`)."""
        rx = re.compile(pattern)
        return _wait(lambda: next((l for l in self.log_text().splitlines() if rx.search(l)),
                                  None), timeout, "Postfix log line /%s/" % pattern)

    def clients(self):
        """The smtpd `QUEUEID: client=NAME[ADDR]` log lines, in order:
        [{"qid", "name", "addr", "port", "service", "rest", "line"}] (rest:
        whatever follows, e.g. ", orig_client=..." or sasl fields)."""
        out = []
        for l in self.log_text().splitlines():
            m = _CLIENT_LOG_RE.search(l)
            if m:
                d = m.groupdict()
                d["line"] = l
                out.append(d)
        return out

    def message_files(self):
        new = os.path.join(self.maildir, "new")
        try:
            return sorted(os.path.join(new, n) for n in os.listdir(new))
        except FileNotFoundError:
            return []

    def messages(self):
        """Every delivered message, oldest first, as PostfixMessage."""
        logs = {c["qid"]: c for c in self.clients()}
        out = []
        for path in self.message_files():
            with open(path, "rb") as f:
                data = f.read()
            head = data.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
            # The first Received: field is the one Postfix's smtpd added.
            fields = re.split(rb"\n(?![ \t])", head)
            rec = next((x for x in fields if x.lower().startswith(b"received:")), b"")
            m = _RECEIVED_RE.search(rec.decode("utf-8", "replace"))
            t = _TEST_ID_RE.search(data)
            qid = m.group("qid") if m else None
            log = logs.get(qid, {})
            proto = m.group("proto") if m else None
            out.append(PostfixMessage(
                path=path, data=data, queue_id=qid,
                helo=m.group("helo") if m else None,
                client_name=m.group("name") if m else None,
                client_addr=_bare_addr(m.group("addr")) if m else None,
                protocol=proto,
                tls=bool(proto and "S" in proto.upper().replace("SMTP", "")),
                test_id=t.group(1).decode("latin-1") if t else None,
                service=log.get("service"), log=log))
        return out

    def wait_messages(self, n, timeout=15):
        """Polls until at least `n` messages were delivered; returns them."""
        return _wait(lambda: len(self.message_files()) >= n and self.messages(), timeout,
                     "%d message(s) delivered by Postfix" % n)

    def wait_message(self, test_id, timeout=15):
        """The delivered message with this X-Test-Id (polled), once its smtpd
        log line is there too."""
        def find():
            for m in self.messages():
                if m.test_id == test_id and m.log:
                    return m
            return None
        return _wait(find, timeout, "message %s delivered by Postfix" % test_id)

    def debug_tail(self, n=30):
        out = []
        try:
            with open(self.stderr_log, "rb") as f:
                err = f.read().decode("utf-8", "replace").strip()
            if err:
                out.append("master stderr:\n" + "\n".join(err.splitlines()[-n:]))
        except FileNotFoundError:
            pass
        out.append("maillog (tail):\n" + "\n".join(self.log_text().splitlines()[-n:]))
        return "\n".join(out)


def postfix_for(case, **kw):
    """For a harness.IntegrationCase: skips the test (with the reason) when a
    private Postfix cannot run; else starts a PostfixInstance in
    case.workdir (keyword arguments as PostfixInstance's), stops it at
    cleanup and lists it in case.backends, so that a failed test prints its
    log tail.  Returns the started instance."""
    reason = skip_reason()
    if reason:
        case.skipTest(reason)
    inst = PostfixInstance(case.workdir, **kw)
    case.addCleanup(inst.stop)
    inst.start()
    case.backends.append(inst)
    return inst


# ---------------------------------------------------------------- PROXY clients

PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1_header(source, source_port, dest="127.0.0.1", dest_port=25):
    """b"PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n" (the family from the
    address); source None: b"PROXY UNKNOWN\\r\\n"."""
    if source is None:
        return b"PROXY UNKNOWN\r\n"
    fam = "TCP6" if ipaddress.ip_address(source).version == 6 else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, source, dest, source_port, dest_port)).encode()


def proxy_v2_header(source=None, source_port=0, dest="127.0.0.1", dest_port=25, local=False,
                    tlvs=()):
    """A PROXY v2 header: command PROXY with TCP4/TCP6 addresses (the family
    from `source`), or LOCAL (local=True, or source None: family UNSPEC,
    no addresses).  tlvs: [(type, bytes value), ...] appended."""
    if local or source is None:
        ver_cmd, fam, addrs = 0x20, 0x00, b""
    else:
        src, dst = ipaddress.ip_address(source), ipaddress.ip_address(dest)
        ver_cmd = 0x21
        fam = 0x21 if src.version == 6 else 0x11
        addrs = src.packed + dst.packed + source_port.to_bytes(2, "big") + \
            dest_port.to_bytes(2, "big")
    body = addrs + b"".join(bytes([t]) + len(v).to_bytes(2, "big") + v for t, v in tlvs)
    return PROXY_V2_SIG + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


class ProxySMTP(smtplib.SMTP):
    """smtplib.SMTP that sends `proxy_header` (bytes) right after connecting,
    before reading the greeting."""

    def __init__(self, host="", port=0, proxy_header=b"", **kw):
        self.proxy_header = proxy_header
        super().__init__(host, port, **kw)

    def _get_socket(self, host, port, timeout):
        s = super()._get_socket(host, port, timeout)
        if self.proxy_header:
            s.sendall(self.proxy_header)
        return s


class ProxySMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL (implicit TLS) that sends `proxy_header` in plain
    text first, then the TLS handshake (as HAProxy does)."""

    def __init__(self, host="", port=0, proxy_header=b"", **kw):
        self.proxy_header = proxy_header
        super().__init__(host, port, **kw)

    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout, self.source_address)
        if self.proxy_header:
            s.sendall(self.proxy_header)
        return self.context.wrap_socket(s, server_hostname=self._host)


if __name__ == "__main__":
    # Manual check: python3 postfix_instance.py DIR  (Ctrl-C stops it)
    if skip_reason():
        sys.exit(skip_reason())
    inst = PostfixInstance(sys.argv[1] if len(sys.argv) > 1 else ".").start()
    print("postfix: port %d, proxy port %d, dir %s" % (inst.port, inst.proxy_port, inst.dir))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        inst.stop()
