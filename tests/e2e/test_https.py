"""HTTPS: webhook.tls_cert_file / webhook.tls_key_file make the listener speak
TLS (rustls); webhook_url() then prints https://; bad files keep the listener
down with a clear log line instead of serving plain HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import pytest

import requests

import hookkit as hk
from conftest import chown_pg
from hookkit import count_events, create_workflow


def make_certificate(directory: str) -> tuple[str, str]:
    cert = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60)
    for path in (cert, key):
        chown_pg(path)
        os.chmod(path, 0o600)
    return cert, key


@pytest.fixture
def cert_dir():
    """A directory the postgres OS user can read (pytest's tmp dirs are 0700)."""
    directory = tempfile.mkdtemp(prefix="webhook-tls-")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_https_round_trip(make_cluster, cert_dir):
    directory = cert_dir
    cert, key = make_certificate(directory)
    c = make_cluster(conf={"webhook.tls_cert_file": cert, "webhook.tls_key_file": key,
                           "webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    wf = create_workflow(c)
    url = c.scalar("SELECT webhook_url(%s::uuid)", (wf,))
    assert url == f"https://127.0.0.1:{c.http_port}/hooks/{wf}"
    c.wait_for_http()

    r = requests.post(url, json={"order_id": "tls-1"}, verify=cert, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["msg"] == "success"
    assert count_events(c, wf) == 1
    assert c.scalar("SELECT params->>'order_id' FROM webhook.events WHERE workflow_id = %s::uuid",
                    (wf,)) == "tls-1"

    # Keep-alive over TLS.
    with requests.Session() as session:
        for n in range(5):
            r = session.post(url, json={"n": n}, verify=cert, timeout=10)
            assert r.status_code == 200, r.text
    assert count_events(c, wf) == 6

    # Plain HTTP to the TLS port is not served, and stores nothing.
    with socket.create_connection(("127.0.0.1", c.http_port), timeout=5) as s:
        s.sendall(f"POST /hooks/{wf} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        try:
            reply = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 200"), reply
    assert count_events(c, wf) == 6


def assert_listener_down(c) -> None:
    """No listener process runs and nothing accepts on the HTTP port."""
    assert c.listener_pids() == []
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", c.http_port)) != 0


def test_unreadable_key_keeps_the_listener_down_with_a_clear_error(make_cluster, cert_dir):
    cert, _ = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": cert,
                           "webhook.tls_key_file": os.path.join(cert_dir, "missing.key")})
    c.wait_for_log(r"webhook_ext listener cannot start: cannot read a private key from "
                   r"webhook.tls_key_file", timeout=10)
    assert_listener_down(c)


def curl_status(url: str, cacert: str) -> tuple[int, str]:
    """curl --cacert: (exit code, HTTP status or '')."""
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cacert,
                           "-X", "POST", "-H", "Content-Type: application/json", "-d", "{}", url],
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout if done.returncode == 0 else ""


def test_certificate_reload_keeps_established_connections(make_cluster, cert_dir):
    import http.client
    import ssl

    cert, key = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": cert, "webhook.tls_key_file": key})
    c.sql("CREATE EXTENSION webhook_ext")
    wf = create_workflow(c)
    url = c.scalar("SELECT webhook_url(%s::uuid)", (wf,))
    c.wait_for_http()
    old_ca = os.path.join(cert_dir, "old-ca.crt")
    shutil.copy(cert, old_ca)
    assert curl_status(url, old_ca) == (0, "200")

    # An established keep-alive connection, made with the old certificate.
    context = ssl.create_default_context(cafile=old_ca)
    conn = http.client.HTTPSConnection("127.0.0.1", c.http_port, context=context, timeout=10)
    conn.request("POST", f"/hooks/{wf}", body=b"{}", headers={"Content-Type": "application/json"})
    assert conn.getresponse().read() and conn.sock is not None
    established = conn.sock

    # Renewal: new files in place of the old ones, then pg_reload_conf().
    renewed = tempfile.mkdtemp(prefix="webhook-tls-new-", dir=cert_dir)
    new_cert, new_key = make_certificate(renewed)
    since = c.log_position()
    shutil.copy(new_key, key)
    shutil.copy(new_cert, cert)
    c.sql("SELECT pg_reload_conf()")
    for _ in c.listener_pids():
        since = c.wait_for_log(r"webhook_ext listener reloaded its HTTPS certificate", since=since).end()
    # New connections get the new certificate; a client pinning the old one fails.
    assert curl_status(url, new_cert) == (0, "200")
    assert curl_status(url, old_ca)[0] == 60  # curl: peer certificate cannot be authenticated
    # The established connection was not dropped.
    conn.request("POST", f"/hooks/{wf}", body=b"{}", headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200 and reply.read()
    assert conn.sock is established
    conn.close()

    # A renewal that cannot be read leaves the current certificate in place.
    since = c.log_position()
    with open(cert, "w") as f:
        f.write("not a certificate\n")
    c.sql("SELECT pg_reload_conf()")
    c.wait_for_log(r"WARNING:  webhook_ext listener keeps its HTTPS certificate: "
                   r"no certificate found in", since=since)
    assert curl_status(url, new_cert) == (0, "200")
    assert count_events(c, wf) == 5


# ------------------------------------------------------------------ HTTPS
@pytest.fixture
def tls_cluster(make_cluster, cert_dir):
    cert, key = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": cert, "webhook.tls_key_file": key, "webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    c.wait_for_http()
    return c, cert


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_1_2_and_1_3(tls_cluster, version):
    c, cert = tls_cluster
    wf = hk.create_workflow(c)
    context = ssl.create_default_context(cafile=cert)
    context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    with socket.create_connection(("127.0.0.1", c.http_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() == version.replace("_", ".")
            body = json.dumps({"tls": version}).encode()
            s.sendall(hk.http_request_bytes("POST", f"/hooks/{wf}", c.http_port, body=body,
                                            headers={"Content-Type": "application/json", "Connection": "close"}))
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert c.scalar("SELECT params->>'tls' FROM webhook.events WHERE workflow_id = %s::uuid", (wf,)) == version


def test_unreadable_certificate_keeps_the_listener_down(make_cluster, cert_dir):
    _, key = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": os.path.join(cert_dir, "missing.crt"),
                           "webhook.tls_key_file": key})
    c.wait_for_log(r"webhook_ext listener cannot start: cannot read webhook.tls_cert_file "
                   r"\"[^\"]*missing.crt\"", timeout=10)
    assert_listener_down(c)
