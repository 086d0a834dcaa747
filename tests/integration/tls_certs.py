"""tls_certs.py: test certificates and password files, made at test time.

Everything is generated with the `openssl` command (req, x509, passwd) into a
directory the caller names; nothing is checked in.  A second call with the
same directory and names reuses what is there (a manifest records what was
made), so a test class can share one set; concurrent callers (run.py -j) are
serialised with a lock file.  Keys are ECDSA P-256 by default (fast to make;
RSA 2048 on request).  Python 3 standard library only.

    from tls_certs import make_certs, make_passwd
    c = make_certs(os.path.join(workdir, "tls"), dns_names=["mx.test.example"])
    c.ca_cert, c.server_cert, c.server_key            # a CA and its server
    c.other_ca_cert                                   # unrelated CA: verify fails
    c.self_signed_cert, c.self_signed_key             # not signed by any CA
    c.wrong_name_cert, c.wrong_name_key               # CA-signed, other name
    c.client_context()                                # ssl client trusting c.ca
    c.server_context()                                # ssl server with c.server_*
    make_passwd(os.path.join(workdir, "passwd"), {"alice": "s3cret"})
    make_passwd(path, users, scheme="yescrypt")       # or "sha256"
    check_passwd_hash("s3cret", hash)                 # crypt(3) says it matches
    skip_reason()                                     # "no openssl" or None

The server certificate's subjectAltName holds DNS:localhost, IP:127.0.0.1
and every name in `dns_names` (its CN is the first of them, or localhost);
the self-signed certificate has the same names, so only its issuer is wrong;
the wrong-name certificate is signed by the test CA for
"wrong-name.test.invalid" only, so only its name is wrong.
"""

import ctypes
import ctypes.util
import dataclasses
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import tempfile

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DEFAULT_DNS_NAME = "mx.test.example"
WRONG_NAME = "wrong-name.test.invalid"
DAYS = 3650
# Bump when the way the files are made changes: old caches are then remade.
LAYOUT = 2

_CONFIG = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ leaf_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[ self_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
subjectAltName = @alt
[ alt ]
%s
"""


def skip_reason():
    """Why certificates cannot be made here (no openssl), or None."""
    if not os.access(OPENSSL, os.X_OK):
        return "the openssl command is not installed"
    return None


class CertError(RuntimeError):
    """openssl failed; the message holds its output."""


@dataclasses.dataclass(frozen=True)
class TlsCerts:
    """Paths (PEM files) of one generated set; see the module docstring."""
    dir: str
    dns_names: tuple          # the extra DNS names in the server certificate
    ca_cert: str              # test CA: trust this to verify server_cert
    ca_key: str
    server_cert: str          # leaf signed by the CA (localhost, 127.0.0.1, dns_names)
    server_key: str
    server_chain: str         # server_cert followed by ca_cert
    server_combined: str      # server_key, server_cert, ca_cert in one file
    other_ca_cert: str        # an unrelated CA: verifying server_cert with it fails
    other_ca_key: str
    self_signed_cert: str     # self-signed, same names as server_cert
    self_signed_key: str
    wrong_name_cert: str      # signed by the test CA, for WRONG_NAME only
    wrong_name_key: str

    def client_context(self, cafile=None, check_hostname=True):
        """An ssl.SSLContext for a client that trusts `cafile` (default: the
        test CA), TLS 1.2 or later, verifying the peer."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile or self.ca_cert)
        ctx.check_hostname = check_hostname
        return ctx

    def server_context(self, cert=None, key=None):
        """An ssl.SSLContext for a server presenting `cert`/`key` (default:
        server_cert and server_key)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert or self.server_cert, key or self.server_key)
        return ctx


def _run(argv, stdin=None, cwd=None):
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=cwd, timeout=60)
    if p.returncode != 0:
        raise CertError("%s failed (exit %d): %s" % (" ".join(argv[:3]), p.returncode,
                                                    p.stderr.decode("utf-8", "replace").strip()))
    return p.stdout


def _new_key(path, key_type):
    if key_type == "ec":
        argv = [OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", path]
    elif key_type == "rsa":
        argv = [OPENSSL, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", path]
    else:
        raise ValueError("key_type must be 'ec' or 'rsa', not %r" % key_type)
    _run(argv)
    os.chmod(path, 0o600)


def _serial():
    return "0x" + os.urandom(12).hex()


def _self_signed(cnf, key, cert, cn, ext):
    _run([OPENSSL, "req", "-config", cnf, "-new", "-x509", "-key", key, "-out", cert,
          "-days", str(DAYS), "-subj", "/CN=%s" % cn, "-extensions", ext, "-sha256",
          "-set_serial", _serial()])


def _signed(cnf, key, cert, cn, ca_cert, ca_key, ext, tmpdir):
    csr = os.path.join(tmpdir, os.path.basename(cert) + ".csr")
    _run([OPENSSL, "req", "-config", cnf, "-new", "-key", key, "-out", csr,
          "-subj", "/CN=%s" % cn, "-sha256"])
    _run([OPENSSL, "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
          "-out", cert, "-days", str(DAYS), "-sha256", "-set_serial", _serial(),
          "-extfile", cnf, "-extensions", ext])
    os.unlink(csr)


def _alt_section(names):
    lines = []
    for i, n in enumerate(names, 1):
        lines.append("DNS.%d = %s" % (i, n))
    lines.append("IP.1 = 127.0.0.1")
    return "\n".join(lines)


def make_certs(directory, dns_names=(DEFAULT_DNS_NAME,), key_type="ec"):
    """Creates (or reuses) the test CA, server, other-CA, self-signed and
    wrong-name certificates in `directory`; returns a TlsCerts.  `dns_names`
    (a string or a sequence) are added to the server certificate's SANs next
    to localhost and 127.0.0.1.  Idempotent: an existing set made with the
    same names and key type is reused as is; otherwise everything is remade."""
    if isinstance(dns_names, str):
        dns_names = (dns_names,)
    dns_names = tuple(dns_names)
    for n in dns_names:
        if not n or any(c in n for c in " \t\r\n,=/\\\"'"):
            raise ValueError("bad DNS name %r" % n)
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    certs = TlsCerts(
        dir=directory, dns_names=dns_names,
        ca_cert=p("ca.crt"), ca_key=p("ca.key"),
        server_cert=p("server.crt"), server_key=p("server.key"),
        server_chain=p("server-chain.crt"), server_combined=p("server-combined.pem"),
        other_ca_cert=p("other-ca.crt"), other_ca_key=p("other-ca.key"),
        self_signed_cert=p("self-signed.crt"), self_signed_key=p("self-signed.key"),
        wrong_name_cert=p("wrong-name.crt"), wrong_name_key=p("wrong-name.key"))
    want = {"layout": LAYOUT, "dns_names": list(dns_names), "key_type": key_type}
    manifest = p("manifest.json")
    with open(p(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(manifest) as f:
                have = json.load(f)
        except (OSError, ValueError):
            have = None
        files = [getattr(certs, f.name) for f in dataclasses.fields(certs)
                 if f.name not in ("dir", "dns_names")]
        if have == want and all(os.path.exists(f) for f in files):
            return certs
        if os.path.exists(manifest):
            os.unlink(manifest)
        names = ("localhost",) + tuple(n for n in dns_names if n != "localhost")
        cn = dns_names[0] if dns_names else "localhost"
        tmp = tempfile.mkdtemp(prefix=".gen-", dir=directory)
        try:
            cnf = os.path.join(tmp, "openssl.cnf")
            with open(cnf, "w") as f:
                f.write(_CONFIG % _alt_section(names))
            wcnf = os.path.join(tmp, "wrong.cnf")
            with open(wcnf, "w") as f:
                f.write(_CONFIG % "DNS.1 = %s" % WRONG_NAME)
            for key in (certs.ca_key, certs.server_key, certs.other_ca_key,
                        certs.self_signed_key, certs.wrong_name_key):
                _new_key(key, key_type)
            _self_signed(cnf, certs.ca_key, certs.ca_cert, "smtplb test CA", "ca_ext")
            _self_signed(cnf, certs.other_ca_key, certs.other_ca_cert, "unrelated test CA",
                         "ca_ext")
            _signed(cnf, certs.server_key, certs.server_cert, cn, certs.ca_cert, certs.ca_key,
                    "leaf_ext", tmp)
            _signed(wcnf, certs.wrong_name_key, certs.wrong_name_cert, WRONG_NAME,
                    certs.ca_cert, certs.ca_key, "leaf_ext", tmp)
            _self_signed(cnf, certs.self_signed_key, certs.self_signed_cert, cn, "self_ext")
            with open(certs.server_cert) as s, open(certs.ca_cert) as c:
                server_pem, ca_pem = s.read(), c.read()
            with open(certs.server_key) as k:
                key_pem = k.read()
            with open(certs.server_chain, "w") as f:
                f.write(server_pem + ca_pem)
            with open(certs.server_combined, "w") as f:
                f.write(key_pem + server_pem + ca_pem)
            os.chmod(certs.server_combined, 0o600)
            # Keys readable by the owner only, but the directory must be
            # searchable for daemons that drop privileges after reading.
            os.chmod(directory, 0o755)
            with open(manifest + ".tmp", "w") as f:
                json.dump(want, f)
            os.rename(manifest + ".tmp", manifest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return certs


# ---------------------------------------------------------------- passwords


def _libcrypt():
    name = ctypes.util.find_library("crypt")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        lib.crypt_gensalt.restype = ctypes.c_char_p
        lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                      ctypes.c_int]
        return lib
    except (OSError, AttributeError):
        return None


def crypt_hash(password, scheme="sha512"):
    """A crypt(3) hash of `password`: "sha512" ($6$, from `openssl passwd
    -6`), "sha256" ($5$) or "yescrypt" ($y$, from libxcrypt through ctypes;
    CertError when libcrypt lacks it)."""
    if "\n" in password or "\r" in password or "\0" in password:
        raise ValueError("a password with CR, LF or NUL cannot be hashed here")
    if scheme in ("sha512", "sha256"):
        flag = "-6" if scheme == "sha512" else "-5"
        # On stdin, not argv: not visible in ps.
        out = _run([OPENSSL, "passwd", flag, "-stdin"], stdin=password.encode() + b"\n")
        return out.decode().strip()
    if scheme == "yescrypt":
        lib = _libcrypt()
        salt = lib.crypt_gensalt(b"$y$", 0, None, 0) if lib else None
        h = lib.crypt(password.encode(), salt) if salt else None
        if not h or not h.startswith(b"$y$"):
            raise CertError("libcrypt cannot make yescrypt hashes here")
        return h.decode()
    raise ValueError("scheme must be sha512, sha256 or yescrypt, not %r" % scheme)


def check_passwd_hash(password, hashed):
    """True when crypt(3) says `password` matches `hashed` (libcrypt through
    ctypes; None when libcrypt is not available)."""
    lib = _libcrypt()
    if lib is None:
        return None
    out = lib.crypt(password.encode(), hashed.encode())
    return out is not None and out.decode() == hashed


def make_passwd(path, users, scheme="sha512"):
    """Writes `user:hash` lines (crypt(3) hashes, see crypt_hash) for each
    {user: password} in `users`, in the order given, mode 0600, replacing
    the file atomically.  Returns `path`."""
    lines = []
    for user, password in users.items():
        if not user or any(c in user for c in ":\r\n\0"):
            raise ValueError("bad user name %r" % user)
        lines.append("%s:%s\n" % (user, crypt_hash(password, scheme)))
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)
    os.rename(tmp, path)
    return path


_shared_dirs = {}


def shared_certs(name):
    """One certificate set per test module `name`, made once and removed
    when the process exits."""
    if name not in _shared_dirs:
        import atexit
        import shutil
        import tempfile
        d = tempfile.mkdtemp(prefix="smtplb-it-%s-certs-" % name)
        atexit.register(shutil.rmtree, d, True)
        _shared_dirs[name] = d
    return make_certs(_shared_dirs[name])
