# SPDX-License-Identifier: MIT
"""A loopback SMTP sink for tests: the next hop an MTA under test relays to.
It accepts every transaction and keeps each message as it arrived on the
wire (CRLF line ends, the leading dot of a dot-stuffed line removed), with
its envelope.  A transaction the client leaves in DATA (it closes the
connection before the final dot) is kept apart, in .aborted.

    with SmtpSink() as sink:
        ...  # the MTA relays to 127.0.0.1:sink.port
        msg = sink.wait_for(b"marker", timeout=30)   # msg.data, .mail_from, .rcpts

By default it offers no extension beyond PIPELINING and SIZE: no
8BITMIME, no SMTPUTF8, no CHUNKING, no STARTTLS (a 7-bit next hop, as RFC
5321 has it by default: an MTA must then send 8-bit mail as it is or
convert it, which is what the tests look at).  SmtpSink(eightbitmime=True)
offers 8BITMIME too, for a next hop that takes 8-bit mail.  Each command and reply line is bounded; the data is not.
"""
import socketserver
import threading
import time


class Message:
    def __init__(self, mail_from, rcpts, data, extensions):
        self.mail_from = mail_from
        self.rcpts = rcpts
        self.data = data
        # The MAIL FROM parameters the client gave (BODY=8BITMIME, SIZE=...).
        self.extensions = extensions


class _Handler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        self.reply("220 sink.test ESMTP test sink")
        mail_from, rcpts, params = None, [], []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                ext = "250-8BITMIME\r\n" if sink.eightbitmime else ""
                self.reply(f"250-sink.test\r\n250-PIPELINING\r\n{ext}250 SIZE 104857600" if verb == "EHLO"
                           else "250 sink.test")
            elif verb == "MAIL":
                parts = cmd[10:].split()
                mail_from, rcpts, params = parts[0].strip("<>") if parts else "", [], parts[1:]
                self.reply("250 OK")
            elif verb == "RCPT":
                rcpts.append(cmd[8:].split()[0].strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = bytearray()
                while True:
                    dl = self.rfile.readline()
                    if not dl:
                        # The client went away before the final dot: no
                        # message (an MTA whose transport filter failed).
                        sink.abort(Message(mail_from, rcpts, bytes(data), params))
                        return
                    if dl in (b".\r\n", b".\n"):
                        break
                    data += dl[1:] if dl.startswith(b".") else dl
                sink.store(Message(mail_from, rcpts, bytes(data), params))
                self.reply("250 OK stored")
            elif verb == "RSET":
                mail_from, rcpts, params = None, [], []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    """Listens on 127.0.0.1 (port 0: any free port; .port says which);
    eightbitmime: offer 8BITMIME in the EHLO reply."""

    def __init__(self, port=0, eightbitmime=False):
        self.eightbitmime = eightbitmime
        self.messages = []
        # Transactions the client left in DATA, before the final dot: what
        # it had sent (not a message: a real server discards it).
        self.aborted = []
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.sink = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def store(self, message):
        with self.lock:
            self.messages.append(message)

    def abort(self, message):
        with self.lock:
            self.aborted.append(message)

    def wait_for(self, marker, timeout=30):
        """The first stored message whose data contains marker (bytes),
        waiting at most timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                for m in self.messages:
                    if marker in m.data:
                        return m
            if time.monotonic() > deadline:
                raise AssertionError(f"the sink got no message with {marker!r} within {timeout}s")
            time.sleep(0.1)

    def find(self, marker):
        """Every stored message whose data contains marker, now."""
        with self.lock:
            return [m for m in self.messages if marker in m.data]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

