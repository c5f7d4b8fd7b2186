"""The floors for bench/webhooks.py: minimal Flask apps returning fixed TwiML on the same gevent server.

``python bench/floor_app.py PORT``: the floor itself, the least any Flask answer costs.
``python bench/floor_app.py PORT signed TOKEN PUBLIC_URL``: the same, after what every webhook must do
before it can answer at all: read Twilio's form the way Shetphone's webhook app reads it and check the
X-Twilio-Signature over it with Shetphone's own check. The gap between the two floors is that
unavoidable part; the gap between the signed floor and ``/voice`` is the call's own work.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response, abort, request  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from shetphone.serving import listening_socket  # noqa: E402
from shetphone.web.signature import WebhookSignature  # noqa: E402
from shetphone.web.webhooks import WebhookRequest  # noqa: E402

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Dial answerOnBridge="true" timeout="20">'
    "<Client>alice</Client></Dial></Response>"
)
app = Flask(__name__)
signature: WebhookSignature | None = None


@app.post("/voice")
@app.post("/voice/status")
def fixed():
    if signature is not None and not signature.valid(request.path, request.form,
                                                     request.headers.get("X-Twilio-Signature", "")):
        abort(403)
    return Response(TWIML, mimetype="text/xml")


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    if sys.argv[2:3] == ["signed"]:
        app.request_class = WebhookRequest
        signature = WebhookSignature(sys.argv[3], sys.argv[4])
    # The same listener as the real app's built-in server (TCP_NODELAY), so only the app differs.
    WSGIServer(listening_socket("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
