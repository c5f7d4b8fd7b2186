"""The floor for bench/webhooks.py: a minimal Flask app returning fixed TwiML on the same gevent server."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from shetphone.serving import listening_socket  # noqa: E402

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Dial answerOnBridge="true" timeout="20">'
    "<Client>alice</Client></Dial></Response>"
)
app = Flask(__name__)


@app.post("/voice")
@app.post("/voice/status")
def fixed():
    return Response(TWIML, mimetype="text/xml")


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    # The same listener as the real app's built-in server (TCP_NODELAY), so only the app differs.
    WSGIServer(listening_socket("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
