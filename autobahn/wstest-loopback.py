"""Run wstest with its TCP listeners bound to 127.0.0.1.

wstest 25.10.1 binds the fuzzing server to every interface (autobahn's
listenWS passes interface '', to listenTCP or, for wss://, listenSSL), and
neither its spec nor its options can change that. This wrapper makes an empty interface mean 127.0.0.1, then runs
wstest with the same command line. The embedded web server stays off with
`-u 0`.

Usage (see run.sh client): .venv/bin/python wstest-loopback.py -m fuzzingserver -s SPEC -u 0
"""
import sys

# Importing wstest installs the Twisted reactor it prefers; patch that one.
from autobahntestsuite import wstest
from twisted.internet import reactor

_listen_tcp = reactor.listenTCP
_listen_ssl = reactor.listenSSL


def listen_tcp_loopback(port, factory, backlog=50, interface=""):
    return _listen_tcp(port, factory, backlog, interface or "127.0.0.1")


def listen_ssl_loopback(port, factory, context_factory, backlog=50, interface=""):
    # wss:// (a spec with "cert" and "key") listens through listenSSL.
    return _listen_ssl(port, factory, context_factory, backlog, interface or "127.0.0.1")


reactor.listenTCP = listen_tcp_loopback
reactor.listenSSL = listen_ssl_loopback

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    sys.exit(wstest.run())
