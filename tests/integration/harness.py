"""harness.py: what every integration test needs to run smtplb for real.

Each test gets a fresh temporary directory, fresh loopback ports (from
bind(0)), fresh backend processes (fault_backend.py or Postfix's smtp-sink)
and a fresh smtplb started from a generated YAML configuration with only the
keys DESIGN.md fixes (plus `workers: 1` where a test needs the balancer's
order to be deterministic).  Nothing waits by sleeping: readiness is a port
that accepts, a file that appears or a log line; every wait has a deadline.

On success the test's directory is removed; on failure it is kept and the
tails of smtplb's log and of the backends' event logs are printed, so a
failure can be read without re-running it (SMTPLB_IT_KEEP=1 keeps every
directory).
"""

import json
import random
import os
import re
import shutil
import signal
import socket
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SMTPLB_BIN = os.environ.get("SMTPLB_BIN") or os.path.join(REPO, "build", "smtplb")
FAULT_BACKEND = os.path.join(HERE, "fault_backend.py")
HOST = "127.0.0.1"

# Short timeouts so that stall tests take seconds, not minutes.  Tests that
# check a timeout read these values rather than repeating them.
TIMEOUTS = {
    "backend_connect": "2s",
    "backend_reply": "2s",
    "backend_data_done": "3s",
    "transaction": "30s",
    "shutdown": "5s",
}
BACKEND_REPLY_S = 2.0
BACKEND_DATA_DONE_S = 3.0
SHUTDOWN_S = 5.0

CRLF = b"\r\n"


def find_tool(name):
    """Path of a peer program, or None (the test is then skipped)."""
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


SMTP_SINK = find_tool("smtp-sink")
SMTP_SOURCE = find_tool("smtp-source")
SWAKS = find_tool("swaks")


# ---------------------------------------------------------------- waiting


def wait_for(predicate, timeout, what, interval=0.02):
    """Polls `predicate` until it returns a true value, which is returned;
    fails the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    """A port nothing is bound to, on any address, chosen below Linux's
    ephemeral range (32768-60999): a test that opens thousands of client
    connections takes ephemeral ports, and must not take the one another
    test running beside it was just given."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10000, 32000)
        s = socket.socket()
        try:
            s.bind(("0.0.0.0", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in 10000-32000")


def _sanitized(binary):
    """True when `binary` is built with AddressSanitizer (its allocator
    keeps freed memory in quarantine, so RSS says little there)."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out


SANITIZED = _sanitized(SMTPLB_BIN) if os.path.exists(SMTPLB_BIN) else False


def port_accepts(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- YAML


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (enough for configs)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append("%s%s: []" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict):
                inner = to_yaml(v, indent + 1).splitlines()
                out.append("%s- %s" % (pad, inner[0].lstrip()))
                out.extend(inner[1:])
            elif isinstance(v, list):
                out.append("%s- %s" % (pad, json.dumps(v)))
            else:
                out.append("%s- %s" % (pad, _scalar(v)))
    return "\n".join(out)


# ---------------------------------------------------------------- processes


class Process:
    """A child in its own process group, stopped at the end of the test."""

    def __init__(self, argv, log_path, cwd=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL to the whole process group, then reap."""
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.p.wait(10)
        self.log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


def _tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


# ---------------------------------------------------------------- smtplb


_KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line):
    """`key=value key="quoted value"` -> dict (values unquoted)."""
    out = {}
    for k, v in _KV_RE.findall(line):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[k] = v
    return out


class Smtplb:
    """One smtplb process with a generated configuration."""

    def __init__(self, case, config):
        self.case = case
        self.config = config
        self.dir = case.workdir
        self.config_path = os.path.join(self.dir, "smtplb.yaml")
        self.log_path = os.path.join(self.dir, "smtplb.log")
        self.proc = None
        self.exit_code = None
        self.wrap = []  # a command smtplb runs under (e.g. prlimit), or none

    def listener_port(self, name=None):
        for l in self.config["listeners"]:
            if name is None or l["name"] == name:
                return int(l["listen"].rsplit(":", 1)[1])
        raise KeyError(name)

    @property
    def port(self):
        return self.listener_port()

    def start(self, timeout=10):
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config) + "\n")
        if not os.access(SMTPLB_BIN, os.X_OK):
            raise AssertionError("smtplb binary not found: %s (set SMTPLB_BIN)" % SMTPLB_BIN)
        self.proc = Process(self.wrap + [SMTPLB_BIN, "run", "-c", self.config_path], self.log_path)
        self.case.procs.append(self.proc)
        ports = [int(l["listen"].rsplit(":", 1)[1]) for l in self.config["listeners"]]

        def ready():
            if not self.proc.alive():
                raise AssertionError("smtplb exited with %s at start:\n%s"
                                     % (self.proc.p.returncode, _tail(self.proc.log_text())))
            return all(port_accepts(p) for p in ports)

        wait_for(ready, timeout, "smtplb to listen on %s" % ports)
        return self

    def stop(self, timeout=None):
        """SIGTERM; returns the exit status (None if it did not exit)."""
        if timeout is None:
            timeout = SHUTDOWN_S + 5
        self.proc.signal(signal.SIGTERM)
        self.exit_code = self.proc.wait(timeout)
        return self.exit_code

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def log_lines(self, event=None):
        out = []
        for line in self.log_text().splitlines():
            if event is None or (" event=%s " % event) in line + " ":
                out.append(line)
        return out

    def transactions(self):
        """The `event=transaction` summary lines, as dicts."""
        return [parse_kv(l) for l in self.log_lines("transaction")]

    def wait_transactions(self, n, timeout=10):
        return wait_for(lambda: len(self.transactions()) >= n and self.transactions(), timeout,
                        "%d transaction log line(s)" % n)

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)
        return wait_for(lambda: next((l for l in self.log_text().splitlines() if rx.search(l)),
                                     None), timeout, "smtplb log line /%s/" % pattern)

    def status(self, key):
        """A /proc/PID/status value in kB (VmHWM, VmRSS)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)


def base_config(listen_port, backends, **over):
    """A one-listener, one-pool configuration; `over` replaces top-level keys
    (`limits` and `timeouts` are merged into the defaults)."""
    cfg = {
        "hostname": "lb.test.example",
        "workers": 1,
        "listeners": [{"name": "mx", "listen": "%s:%d" % (HOST, listen_port), "role": "inbound"}],
        "local_domains": ["example.com", "example.org"],
        "trusted_networks": ["127.0.0.0/8"],
        "pools": [{"name": "main", "algorithm": "round_robin",
                   "backends": [{"address": b} for b in backends]}],
        "routes": [{"pool": "main"}],
        "limits": {"max_message_size": "10MB", "max_recipients": 100},
        "timeouts": dict(TIMEOUTS),
    }
    for k, v in over.items():
        if k in ("limits", "timeouts"):
            cfg[k].update(v)
        elif v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


# ---------------------------------------------------------------- backends


class FaultBackend:
    """One fault_backend.py process; its store, events and control file."""

    def __init__(self, case, name, port=0, **faults):
        self.case = case
        self.name = name
        self.store = os.path.join(case.workdir, "backend-" + name)
        self.msgs_dir = os.path.join(self.store, "msgs")
        self.control_path = os.path.join(self.store, "control.json")
        self.port = port
        self.faults = faults
        self.proc = None
        os.makedirs(self.store, exist_ok=True)

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    def argv(self):
        a = [sys.executable, FAULT_BACKEND, "--store", self.store, "--name", self.name,
             "--port", str(self.port), "--control", self.control_path]
        for k, v in self.faults.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                a.append(flag)
            elif v is None or v is False:
                continue
            elif k == "rcpt_replies":
                for addr, r in v.items():
                    a += ["--rcpt-reply", "%s=%s" % (addr, r)]
            elif k == "omit_ehlo":
                for kw in v:
                    a += ["--omit-ehlo", kw]
            else:
                a += [flag, str(v)]
        return a

    def start(self, timeout=10):
        ready = os.path.join(self.store, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        self.proc = Process(self.argv(), os.path.join(self.store, "stderr.log"))
        self.case.procs.append(self.proc)

        def is_ready():
            if not self.proc.alive():
                raise AssertionError("backend %s exited at start:\n%s"
                                     % (self.name, _tail(self.proc.log_text())))
            try:
                with open(ready) as f:
                    info = json.load(f)
            except (FileNotFoundError, ValueError):
                return None
            return info if info["pid"] == self.proc.pid else None

        info = wait_for(is_ready, timeout, "backend %s to be ready" % self.name)
        self.port = info["port"]
        return self

    def set_control(self, **control):
        tmp = self.control_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(control, f)
        os.rename(tmp, self.control_path)

    def kill(self):
        self.proc.kill()

    def stop(self):
        self.proc.signal(signal.SIGTERM)
        self.proc.wait(10)

    def restart(self):
        """A new process on the same port, with the same store."""
        if self.proc and self.proc.alive():
            self.proc.kill()
        return self.start()

    # -- what it saw --

    def events(self, ev=None):
        out = []
        try:
            with open(os.path.join(self.store, "events.jsonl")) as f:
                for line in f:
                    if line.endswith("\n"):
                        rec = json.loads(line)
                        if ev is None or rec["ev"] == ev:
                            out.append(rec)
        except FileNotFoundError:
            pass
        return out

    def commands(self):
        return [e["line"] for e in self.events("cmd") if e.get("line") is not None]

    def faults_fired(self, kind=None):
        return [e for e in self.events("fault") if kind is None or e["kind"] == kind]

    def messages(self):
        """Stored messages: envelope dicts with the bytes under "eml"."""
        out = []
        try:
            names = sorted(os.listdir(self.msgs_dir))
        except FileNotFoundError:
            return out
        for n in names:
            if n.endswith(".json"):
                with open(os.path.join(self.msgs_dir, n)) as f:
                    env = json.load(f)
                with open(os.path.join(self.msgs_dir, n[:-5] + ".eml"), "rb") as f:
                    env["eml"] = f.read()
                out.append(env)
        return out

    def debug_tail(self):
        try:
            with open(os.path.join(self.store, "events.jsonl")) as f:
                return _tail(f.read(), 25)
        except FileNotFoundError:
            return "(no events)"


class SinkBackend:
    """Postfix's smtp-sink, dumping each message to its own file."""

    def __init__(self, case, name):
        self.case = case
        self.name = name
        self.dir = os.path.join(case.workdir, "sink-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.proc = None

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    def start(self, timeout=10):
        argv = [SMTP_SINK]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # smtp-sink refuses to run as root without -u
        # -d: one file per transaction, named from the template plus a
        # random hex suffix; 200 is the listen backlog.
        argv += ["-d", os.path.join(self.dir, "m."), "%s:%d" % (HOST, self.port), "200"]
        self.proc = Process(argv, os.path.join(self.case.workdir, "sink-%s.log" % self.name))
        self.case.procs.append(self.proc)

        def ready():
            if not self.proc.alive():
                raise AssertionError("smtp-sink %s exited:\n%s"
                                     % (self.name, _tail(self.proc.log_text())))
            return port_accepts(self.port)

        wait_for(ready, timeout, "smtp-sink %s to listen" % self.name)
        return self

    def files(self):
        return sorted(os.listdir(self.dir))

    def messages(self):
        out = []
        for n in self.files():
            with open(os.path.join(self.dir, n), "rb") as f:
                out.append(f.read())
        return out

    def debug_tail(self):
        return "%d message file(s)" % len(self.files())


# ---------------------------------------------------------------- SMTP clients


class Reply:
    def __init__(self, lines):
        self.lines = lines  # text after "ddd-" / "ddd "
        self.code = int(lines[0][:3]) if lines else 0
        first = lines[0][4:] if lines else ""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", first)
        self.enhanced = m.group(1) if m else ""
        self.text = "\n".join(l[4:] for l in lines)

    def __repr__(self):
        return "<%s>" % " / ".join(self.lines)

    def is_(self, code, enhanced=None):
        return self.code == code and (enhanced is None or self.enhanced == enhanced)


def _diag_rqueue(sport, dport):
    """The receive queue of the IPv4 TCP socket 127.0.0.1:sport ->
    127.0.0.1:dport (linux/inet_diag.h, one exact lookup)."""
    import struct
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
    try:
        lo = socket.inet_aton(HOST)
        sockid = struct.pack("!HH", sport, dport) + lo + b"\0" * 12 + lo + b"\0" * 12 + \
            struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
        req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        hdr = struct.pack("=IHHII", 16 + len(req), 20, 1, 1, 0)  # SOCK_DIAG_BY_FAMILY, REQUEST
        sock.settimeout(2)
        sock.send(hdr + req)
        data = sock.recv(65536)
    finally:
        sock.close()
    length, mtype = struct.unpack_from("=IH", data, 0)
    if mtype != 20:
        return None  # NLMSG_ERROR: no such socket
    # inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue
    return struct.unpack_from("=I", data, 16 + 4 + 48 + 4)[0]


class SmtpClient:
    """A strict raw client: sends exact bytes, keeps every reply."""

    def __init__(self, port, timeout=15, tls=None, source=None, host=HOST):
        """`tls`: an ssl.SSLContext for implicit TLS (port 465 style);
        `source`: the loopback address to connect from, e.g. 127.0.0.2;
        `host`: the address to connect to, e.g. "::1"."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def starttls(self, context, server_hostname="localhost"):
        """STARTTLS, its 220, then the handshake.  Anything the server sent
        after the 220 before the handshake fails the test (no reply may
        follow STARTTLS's)."""
        r = self.cmd("STARTTLS")
        assert r.code == 220, "STARTTLS: %r" % r
        assert self.buf == b"", "bytes after the 220 to STARTTLS: %r" % self.buf
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply within %.1fs (buffered: %r)" % (timeout, self.buf))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError("no reply within %.1fs (buffered: %r)" % (timeout, self.buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                raise AssertionError("connection closed while waiting for a reply "
                                     "(buffered: %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        lines = []
        while True:
            line = self._line(timeout)
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return Reply(lines)
            if line[3] != "-":
                raise AssertionError("malformed reply line %r" % line)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + CRLF)
        return self.reply(timeout)

    def banner(self):
        r = self.reply()
        assert r.code == 220, "banner: %r" % r
        return r

    def ehlo(self, name="client.test.example"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, "EHLO: %r" % r
        return r

    def closed_by_peer(self, timeout=5):
        """True when the peer closes within `timeout` (with nothing more
        than what is buffered); the bytes that came before it are kept."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk

    def peer_unread(self):
        """Octets we sent that the peer has not read yet: its socket's
        receive queue, asked of the kernel (sock_diag netlink, or
        /proc/net/tcp when that is not available); None when not found."""
        lport = self.sock.getsockname()[1]
        rport = self.sock.getpeername()[1]
        try:
            return _diag_rqueue(rport, lport)
        except OSError:
            pass
        want_local = "0100007F:%04X" % rport
        want_remote = "0100007F:%04X" % lport
        with open("/proc/net/tcp") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[1] == want_local and parts[2] == want_remote:
                    return int(parts[4].split(":")[1], 16)
        return None

    def send_bytewise(self, data):
        """One write per octet, each read by the peer before the next is
        sent (its receive queue is polled, no sleeping), so the peer's
        reads are split at every octet (SECURITY.md 1, "Segment splits")."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            wait_for(lambda: self.peer_unread() == 0, 5, "smtplb to read octet %d" % i,
                     interval=0.001)

    def transaction(self, mail_from, rcpts, content, mail_params=""):
        """MAIL, RCPTs, DATA, the dot-stuffed content, final dot: returns the
        replies [MAIL, RCPT..., DATA, end-of-data] (stops at a refusal)."""
        out = [self.cmd("MAIL FROM:<%s>%s" % (mail_from, mail_params))]
        if out[-1].code != 250:
            return out
        for r in rcpts:
            out.append(self.cmd("RCPT TO:<%s>" % r))
        out.append(self.cmd("DATA"))
        if out[-1].code != 354:
            return out
        self.send(dot_stuff(content) + b".\r\n")
        out.append(self.reply())
        return out


def api_pools(port):
    """GET /api/pools from the admin API on `port`, as JSON."""
    import http.client
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/api/pools", headers={"Host": "%s:%d" % (HOST, port)})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, "GET /api/pools: %d %r" % (r.status, body[:300])
        return json.loads(body)
    finally:
        conn.close()


def session(port, helo="client.test.example"):
    """A connected client that has had the banner and EHLO."""
    c = SmtpClient(port)
    c.banner()
    c.ehlo(helo)
    return c


def dot_stuff(content):
    """RFC 5321 4.5.2: a line starting with "." gets one more.  `content`
    must end with CR LF (or be empty)."""
    assert content == b"" or content.endswith(CRLF), "content must end with CRLF"
    stuffed = (CRLF + content).replace(b"\r\n.", b"\r\n..")[2:]
    return stuffed


def message(test_id, body=b"Hello.\r\n", headers=None, sender="sender@example.org",
            rcpt="rcpt@example.com"):
    """A small RFC 5322 message with an X-Test-Id header, CRLF line ends."""
    if isinstance(body, str):
        body = body.encode()
    h = [b"From: <%s>" % sender.encode(), b"To: <%s>" % rcpt.encode(),
         b"Subject: integration test " + test_id.encode(), b"X-Test-Id: " + test_id.encode()]
    for x in headers or []:
        h.append(x if isinstance(x, bytes) else x.encode())
    return CRLF.join(h) + CRLF + CRLF + body


def big_body(size, width=76):
    """About `size` octets of distinct numbered lines (so that any lost,
    repeated or swapped chunk changes the bytes)."""
    line_count = size // (width + 2) + 1
    fmt = b"%08d " + b"x" * (width - 9) + b"\r\n"
    return b"".join(fmt % i for i in range(line_count))


def smtplib_send(port, mail_from, rcpts, content, helo="client.test.example"):
    """Sends with Python's smtplib (which dot-stuffs itself); returns the
    end-of-data (code, text) or raises smtplib's exception."""
    with smtplib.SMTP(HOST, port, local_hostname=helo, timeout=30) as s:
        s.ehlo()
        s.mail(mail_from)
        for r in rcpts:
            code, text = s.rcpt(r)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({r: (code, text)})
        return s.data(content)


# ---------------------------------------------------------------- stored messages


def split_received(eml):
    """(the first header field if it is Received:, the rest) of a message;
    the field includes its folded continuation lines and final CR LF."""
    if not eml.startswith(b"Received:"):
        return None, eml
    pos = 0
    while True:
        end = eml.find(CRLF, pos)
        if end < 0:
            return None, eml
        pos = end + 2
        if eml[pos:pos + 1] not in (b" ", b"\t"):
            return eml[:pos], eml[pos:]


def first_difference(a, b):
    n = min(len(a), len(b))
    for i in range(0, n, 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            for j in range(i, min(i + 4096, n)):
                if a[j] != b[j]:
                    return j
    return n


def header_test_id(eml):
    m = re.search(rb"^X-Test-Id:[ \t]*(\S+)", eml, re.IGNORECASE | re.MULTILINE)
    return m.group(1).decode() if m else None


# ---------------------------------------------------------------- the test base


class IntegrationCase(unittest.TestCase):
    """Base class: a work directory, started processes stopped at the end."""

    maxDiff = 2000

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="smtplb-it-%s-" % self._testMethodName[:40])
        self.procs = []
        self.backends = []
        self.lb = None
        self.addCleanup(self._cleanup)

    def _failed(self):
        """Whether this test has failed so far.  Python 3.11 reports each
        failure to the result at once and resets `_outcome.success` while
        the cleanups run, so the result's lists are the reliable source."""
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        if not getattr(outcome, "success", True):
            return True
        result = getattr(outcome, "result", None)
        problems = (getattr(result, "failures", []) + getattr(result, "errors", [])) if result else []
        return any(t is self for t, _ in problems)

    def _cleanup(self):
        failed = self._failed()
        if failed:
            self._dump_logs()
        for p in reversed(self.procs):
            if p.alive():
                p.kill()
            else:
                p.log.close()
        if failed or os.environ.get("SMTPLB_IT_KEEP"):
            sys.stderr.write("    kept %s\n" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _dump_logs(self):
        out = ["---- %s" % self.id()]
        if self.lb is not None:
            out.append("smtplb log (tail):")
            out.append(_tail(self.lb.log_text(), 30))
        for b in self.backends:
            out.append("backend %s (%s):" % (b.name, b.address))
            out.append(b.debug_tail())
        sys.stderr.write("\n".join(out) + "\n")

    # -- building blocks --

    def fault_backend(self, name, **faults):
        b = FaultBackend(self, name, **faults).start()
        self.backends.append(b)
        return b

    def sink(self, name):
        if not SMTP_SINK:
            self.skipTest("smtp-sink (Postfix) is not installed")
        b = SinkBackend(self, name).start()
        self.backends.append(b)
        return b

    def start_smtplb(self, config):
        self.lb = Smtplb(self, config).start()
        return self.lb

    def smtplb_for(self, backends, **over):
        """smtplb on a fresh port in front of `backends` (one pool)."""
        cfg = base_config(free_port(), [b.address for b in backends], **over)
        return self.start_smtplb(cfg)

    def client(self, port=None, helo="client.test.example"):
        c = session(port or self.lb.port, helo)
        self.addCleanup(c.close)
        return c

    def raw_client(self, port=None):
        c = SmtpClient(port or self.lb.port)
        self.addCleanup(c.close)
        return c

    def stop_smtplb(self):
        rc = self.lb.stop()
        self.assertEqual(rc, 0, "smtplb did not exit 0 on SIGTERM (exit status %r)" % rc)

    # -- assertions --

    def assertReply(self, reply, code, enhanced=None, what=""):
        ok = reply.code == code and (enhanced is None or reply.enhanced == enhanced)
        if not ok:
            self.fail("%sexpected %d%s, got %r" % (what + ": " if what else "", code,
                                                 " " + enhanced if enhanced else "", reply))

    def assertBytesEqual(self, got, want, what="message"):
        if got == want:
            return
        i = first_difference(got, want)
        self.fail("%s differs: got %d octets, want %d; first difference at offset %d: "
                  "got %r, want %r" % (what, len(got), len(want), i, got[max(0, i - 20):i + 40],
                                       want[max(0, i - 20):i + 40]))

    def stored(self, test_id, backends=None):
        """[(backend, envelope)] of fault backends holding `test_id`."""
        out = []
        for b in backends if backends is not None else self.backends:
            if isinstance(b, FaultBackend):
                for m in b.messages():
                    if m["test_id"] == test_id:
                        out.append((b, m))
        return out

    def assertDeliveredOnce(self, test_id, content, backends=None, mail_from=None, rcpts=None,
                            at=None):
        """Exactly one backend stored `test_id`, and its bytes are `content`
        after exactly one prepended Received: field (DESIGN.md "Trace
        header").  Returns (backend, envelope)."""
        found = self.stored(test_id, backends)
        where = ["%s:%s" % (b.name, m["id"]) for b, m in found]
        self.assertEqual(len(found), 1, "message %s stored %d times (%s), want exactly once"
                         % (test_id, len(found), where))
        b, m = found[0]
        if at is not None:
            self.assertIs(b, at, "message %s delivered at %s, want %s" % (test_id, b.name,
                                                                         at.name))
        received, rest = split_received(m["eml"])
        self.assertIsNotNone(received, "message %s has no prepended Received: field: %r"
                             % (test_id, m["eml"][:200]))
        self.assertIn(b"by lb.test.example", received.replace(b"\r\n", b" ").replace(b"\t", b" "),
                      "the prepended Received: field is not smtplb's: %r" % received)
        self.assertBytesEqual(rest, content, "message %s after the Received: field" % test_id)
        if mail_from is not None:
            self.assertEqual(m["mail_from"], mail_from)
        if rcpts is not None:
            self.assertEqual(sorted(m["rcpts"]), sorted(rcpts))
        return b, m

    def assertNothingStored(self, backends=None):
        for b in backends if backends is not None else self.backends:
            if isinstance(b, FaultBackend):
                ids = [m["id"] for m in b.messages()]
                self.assertEqual(ids, [], "backend %s stored %s, want nothing" % (b.name, ids))

    def assertNeverSaw(self, needle, backends=None):
        """No backend received a command line containing `needle`."""
        for b in backends if backends is not None else self.backends:
            if isinstance(b, FaultBackend):
                bad = [c for c in b.commands() if needle.lower() in c.lower()]
                self.assertEqual(bad, [], "backend %s saw %r" % (b.name, bad))
